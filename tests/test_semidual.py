"""Semi-dual stochastic OT (otsolve.semidual_sgd, otsolve.semidiscrete_sgd) against independent
oracles: POT's log-domain Sinkhorn (entropic), otsolve.exact (LP), scipy's logsumexp, closed forms
of 1-D semi-discrete transport and quadrature."""
import warnings

import numpy as np
import ot
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.special import logsumexp, softmax, xlogy

import otsolve
from otsolve import ConvergenceWarning, Status


def clouds(n, m, seed=0):
    """2-D Gaussian clouds with the squared Euclidean cost scaled to [0, 1]."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 2))
    y = rng.normal(size=(m, 2)) * [1.5, 0.5] + [2.0, 1.0]
    C = ((x[:, None, :] - y[None, :, :]) ** 2).sum(-1)
    return C / C.max()


def entropic_oracle(C, a, b, reg):
    """<C, P> + reg KL(P | a b^T) of POT's log-domain Sinkhorn plan (unit mass), at tight tol."""
    with np.errstate(divide="ignore"):  # POT takes log(b) of zero weights, harmlessly
        P = ot.sinkhorn(a, b, C, reg, method="sinkhorn_log", stopThr=1e-11, numItermax=100000)
    nz = P > 0
    return float((P * C).sum() + reg * (P[nz] * np.log(P[nz] / np.outer(a, b)[nz])).sum())


@pytest.fixture(scope="module")
def problem_1000():
    n = m = 1000
    return clouds(n, m), np.full(n, 1 / n), np.full(m, 1 / m)


# ---------------------------------------------------------------- discrete, entropic
def test_sag_matches_entropic_value_n1000(problem_1000):
    C, a, b = problem_1000
    reg = 1e-2
    ref = entropic_oracle(C, a, b, reg)
    res = otsolve.semidual_sgd(C, a, b, reg=reg, seed=0)
    assert res.status == Status.OPTIMAL
    assert abs(res.value - ref) <= 1e-3 * ref  # the target
    assert res.value <= ref + 1e-9 * ref       # weak duality: the semi-dual is a lower bound
    # the certified gap (rounded plan) really bounds the error: ref lies in [value, value + gap]
    assert res.duality_gap >= 0 and ref <= res.value + res.duality_gap + 1e-9 * ref
    assert res.duality_gap <= 1e-3 * res.value  # the stopping rule held
    assert res.trace.ndim == 1 and len(res.trace) >= 2 and res.plan is None


@pytest.mark.parametrize("reg", [1e-1, 3e-2])
def test_sag_non_uniform_weights_with_zeros(reg):
    rng = np.random.default_rng(1)
    n, m = 300, 200
    C = clouds(n, m, seed=1)
    a, b = rng.random(n), rng.random(m)
    a[::7] = 0.0  # zero-weight rows are never sampled and carry no mass
    b[3] = 0.0
    a, b = a / a.sum(), b / b.sum()
    ref = entropic_oracle(C, a, b, reg)
    res = otsolve.semidual_sgd(C, a, b, reg=reg, seed=1, return_plan=True)
    assert res.success and abs(res.value - ref) <= 1e-3 * ref
    assert np.allclose(res.plan.sum(1), a, atol=1e-14)  # rows of the implied plan are exact
    assert np.all(res.plan[:, 3] == 0.0)                # no mass to a zero-weight target


def test_asgd_converges_entropic():
    n = m = 200
    C = clouds(n, m, seed=2)
    a, b = np.full(n, 1 / n), np.full(m, 1 / m)
    ref = entropic_oracle(C, a, b, 1e-1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        res = otsolve.semidual_sgd(C, a, b, reg=1e-1, method="asgd", seed=2)
    assert res.success == (res.duality_gap <= 1e-3 * res.value)  # optimal iff certified
    # ASGD converges at O(1/sqrt(k)); its stall rule aims at ~tol, allow 3x
    assert abs(res.value - ref) <= 3e-3 * ref and res.value <= ref


def test_outputs_agree_with_numpy_formulas():
    """f is the soft c-transform of g, value is a.f + b.g, plan and marginal error follow."""
    rng = np.random.default_rng(3)
    n, m, reg = 60, 40, 5e-2
    C = rng.random((n, m))
    a, b = rng.random(n) + 0.1, rng.random(m) + 0.1
    a, b = a / a.sum(), b / b.sum()
    res = otsolve.semidual_sgd(C, a, b, reg=reg, seed=3, return_plan=True)
    f = -reg * logsumexp(np.log(b)[None, :] + (res.g[None, :] - C) / reg, axis=1)
    np.testing.assert_allclose(res.f, f, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(res.value, a @ f + b @ res.g, rtol=1e-12)
    P = a[:, None] * softmax(np.log(b)[None, :] + (res.g[None, :] - C) / reg, axis=1)
    np.testing.assert_allclose(res.plan, P, rtol=1e-10, atol=1e-16)
    np.testing.assert_allclose(res.value_linear, (P * C).sum(), rtol=1e-12)
    assert res.marginal_error == pytest.approx(np.abs(P.sum(0) - b).sum(), abs=1e-14)
    assert res.max_dual_violation == pytest.approx(max(0.0, (f[:, None] + res.g - C).max()))
    assert res.dual_value == res.value


def test_value_is_the_exact_semidual_gradient_checked():
    """The full gradient b - P^T 1 (the marginal error's vector) matches finite differences of
    the objective computed by scipy, at a non-optimal g from a short run."""
    rng = np.random.default_rng(4)
    n, m, reg = 30, 8, 0.2
    C = rng.random((n, m))
    a, b = np.full(n, 1 / n), np.full(m, 1 / m)
    with pytest.warns(ConvergenceWarning):
        res = otsolve.semidual_sgd(C, a, b, reg=reg, n_iter=1, batch_size=4, seed=4, return_plan=True)

    def objective(g):
        return a @ (-reg * logsumexp(np.log(b) + (g - C) / reg, axis=1)) + b @ g

    h = 1e-6
    grad = np.array([(objective(res.g + h * e) - objective(res.g - h * e)) / (2 * h) for e in np.eye(m)])
    np.testing.assert_allclose(b - res.plan.sum(0), grad, atol=1e-8)  # central differences: O(h^2)
    assert res.value == pytest.approx(objective(res.g), rel=1e-12)


# ---------------------------------------------------------------- discrete, reg = 0
def test_sag_reg0_matches_exact_lp():
    n = m = 400
    C = clouds(n, m, seed=5)
    lp = otsolve.exact(C).value
    with warnings.catch_warnings():  # a stall whose rounding certificate is loose warns
        warnings.simplefilter("ignore", ConvergenceWarning)
        res = otsolve.semidual_sgd(C, seed=5)  # defaults: reg = 0, method = "sag"
    assert res.success == (res.duality_gap <= 1e-3 * res.value)  # optimal iff certified
    assert res.value <= lp + 1e-12  # the c-transform pair is dual feasible: a lower bound
    assert abs(res.value - lp) <= 1e-3 * lp
    assert res.max_dual_violation <= 1e-15  # f = min_j C_ij - g_j up to rounding
    np.testing.assert_allclose(res.f, (C - res.g[None, :]).min(1), rtol=0, atol=1e-15)
    assert res.value + res.duality_gap >= lp - 1e-12  # the rounded assignment is feasible


def test_asgd_reg0_improves_and_bounds_lp():
    n = m = 100
    C = clouds(n, m, seed=6)
    lp = otsolve.exact(C).value
    with pytest.warns(ConvergenceWarning, match="n_iter=20000"):  # one sample per step, as in the paper
        res = otsolve.semidual_sgd(C, reg=0.0, method="asgd", seed=6, n_iter=20000, batch_size=1,
                                   lr=0.3, check_every=2000, tol=1e-9)
    assert np.all(res.trace <= lp + 1e-12)  # every averaged iterate is dual feasible
    # ASGD at reg = 0 is O(1/sqrt(k)) (the paper's slow case); measured 3.4e-3 here
    assert abs(res.value - lp) <= 1e-2 * lp
    assert res.trace[-1] > res.trace[0]


# ---------------------------------------------------------------- stability
def test_no_overflow_many_sources_small_reg():
    """POT's SAG/ASGD overflow here (its issue 264); 20k sources keep the suite fast."""
    rng = np.random.default_rng(7)
    n, m = 20000, 50
    x, y = rng.normal(size=(n, 2)), rng.normal(size=(m, 2))
    C = otsolve.cost_matrix(x, y)
    for method in ("sag", "asgd"):
        with pytest.warns(ConvergenceWarning, match="n_iter"):
            res = otsolve.semidual_sgd(C, reg=1e-3, method=method, n_iter=600, seed=7)
        assert res.status == Status.MAX_ITER
        assert np.isfinite(res.g).all() and np.isfinite(res.f).all()
        assert np.isfinite([res.value, res.value_linear, res.marginal_error, res.duality_gap]).all()
        assert np.isfinite(res.trace).all() and res.duality_gap >= 0


def test_huge_costs_tiny_reg_finite():
    C = clouds(50, 40, seed=8) * 1e6
    with pytest.warns(ConvergenceWarning):
        res = otsolve.semidual_sgd(C, reg=1e-2, seed=8, n_iter=50, check_every=10)
    assert np.isfinite(res.g).all() and np.isfinite(res.value)


# ---------------------------------------------------------------- behaviour
def test_budget_status_and_trace():
    C = clouds(100, 80, seed=9)
    with pytest.warns(ConvergenceWarning, match="n_iter=3"):
        res = otsolve.semidual_sgd(C, reg=1e-2, n_iter=3, check_every=1, seed=9)
    assert res.status == Status.MAX_ITER and res.n_iter == 3 and len(res.trace) == 3
    with pytest.warns(ConvergenceWarning, match="n_iter=5"):
        res = otsolve.semidual_sgd(C, reg=1e-2, max_iter=5, seed=9)
    assert res.n_iter == 5
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a converged run warns about nothing
        res = otsolve.semidual_sgd(C, reg=1e-1, seed=9)
    assert res.status == "optimal"


def test_seed_reproducible():
    C = clouds(120, 90, seed=10)
    r1 = otsolve.semidual_sgd(C, reg=5e-2, seed=11, n_iter=20, tol=1.0)
    r2 = otsolve.semidual_sgd(C, reg=5e-2, seed=11, n_iter=20, tol=1.0)
    np.testing.assert_array_equal(r1.g, r2.g)
    with pytest.warns(ConvergenceWarning):
        r3 = otsolve.semidual_sgd(C, reg=5e-2, seed=12, n_iter=20, tol=1e-12)
    assert not np.array_equal(r1.g, r3.g)


def test_shift_and_transpose_invariance():
    C = clouds(150, 150, seed=13)
    reg = 5e-2
    base = otsolve.semidual_sgd(C, reg=reg, seed=13, tol=1e-5)
    shifted = otsolve.semidual_sgd(C + 3.0, reg=reg, seed=13, tol=1e-5)
    assert shifted.value == pytest.approx(base.value + 3.0, rel=1e-5)  # unit mass: + t
    transposed = otsolve.semidual_sgd(C.T, reg=reg, seed=13, tol=1e-5)
    assert transposed.value == pytest.approx(base.value, rel=1e-4)  # both within 1e-5 of OT_eps


def test_progress_bar(capsys):
    C = clouds(50, 50, seed=14)
    otsolve.semidual_sgd(C, reg=1e-1, seed=14, progress=True)
    assert "semi-dual SGD" in capsys.readouterr().err
    otsolve.semidual_sgd(C, reg=1e-1, seed=14)
    assert capsys.readouterr().err == ""


def test_inputs_not_mutated():
    rng = np.random.default_rng(15)
    C, a, b = rng.random((30, 20)), rng.random(30), rng.random(20)
    b *= a.sum() / b.sum()
    copies = C.copy(), a.copy(), b.copy()
    otsolve.semidual_sgd(C, a, b, reg=0.1, seed=0, return_plan=True)
    otsolve.semidual_sgd(C, a, b, reg=0.0, seed=0)
    for arr, copy in zip((C, a, b), copies):
        np.testing.assert_array_equal(arr, copy)
    y = np.array([[0.2], [0.7]])
    y_copy = y.copy()
    otsolve.semidiscrete_sgd(lambda n, r: r.random((n, 1)), y, n_eval=1000, seed=0)
    np.testing.assert_array_equal(y, y_copy)


def rounded_plan_objective(C, a, b, reg, g):
    """Objective of the plan implied by g rounded onto the transport polytope (Altschuler, Weed &
    Rigollet 2017, alg. 2 with exact rows), written directly in numpy: an upper bound of the optimum."""
    P = a[:, None] * softmax(np.log(b)[None, :] + (g[None, :] - C) / reg, axis=1)
    Q = P * np.minimum(1.0, b / P.sum(0))
    err_a, err_b = np.maximum(a - Q.sum(1), 0.0), np.maximum(b - Q.sum(0), 0.0)  # >= 0 up to rounding
    Q = Q + np.outer(err_a, err_b) / err_a.sum()
    np.testing.assert_allclose(Q.sum(1), a, atol=1e-15)
    np.testing.assert_allclose(Q.sum(0), b, atol=1e-15)
    return float((Q * C).sum() + reg * xlogy(Q, Q / np.outer(a, b)).sum()), P


@pytest.mark.parametrize("method", ["sag", "asgd"])
@pytest.mark.parametrize("reg", [0.02, 0.5])
def test_certificate_is_the_rounded_plan_and_survives_changes(method, reg):
    """The certificate of a short run (computed on first access) is the numpy rounding at the
    returned g, even after the caller overwrites res.g and res.f; pickling keeps it."""
    import pickle
    rng = np.random.default_rng(16)
    n, m = 70, 50
    C = rng.random((n, m))
    a, b = rng.random(n) + 0.1, rng.random(m) + 0.1
    a, b = a / a.sum(), b / b.sum()
    with pytest.warns(ConvergenceWarning):
        res = otsolve.semidual_sgd(C, a, b, reg=reg, method=method, n_iter=3, batch_size=5, seed=16)
    g, f = res.g.copy(), res.f.copy()
    upper, P = rounded_plan_objective(C, a, b, reg, g)
    res.g[:] = 0.0
    res.f[:] = 1.0
    assert res.duality_gap == pytest.approx(upper - res.value, rel=1e-10, abs=1e-15)
    assert res.duality_gap > 0  # a short run is not optimal
    assert res.value_linear == pytest.approx((P * C).sum(), rel=1e-12)
    assert res.max_dual_violation == pytest.approx(max(0.0, (f[:, None] + g - C).max()), abs=1e-15)
    again = pickle.loads(pickle.dumps(res))
    assert (again.duality_gap, again.value_linear, again.value) == (res.duality_gap, res.value_linear, res.value)
    with pytest.warns(ConvergenceWarning):
        fresh = otsolve.semidual_sgd(C, a, b, reg=reg, method=method, n_iter=3, batch_size=5, seed=16)
    again = pickle.loads(pickle.dumps(fresh))  # pickled before any access
    assert again.duality_gap == res.duality_gap and "_pending" not in again.__dict__


def test_asgd_passes_sample_each_row_once_or_by_weight():
    """ASGD's rows come by passes: with uniform weights every pass is a permutation of the rows;
    otherwise the frequencies follow a (chi-square-free check: 5 standard deviations)."""
    from otsolve.stochastic.sgd import _Problem
    n, batch = 30, 7
    uniform = _Problem(np.zeros((n, 4)), np.full(n, 1 / n), np.full(4, 1 / 4), batch, 0)
    idx = np.concatenate([uniform.sample_passes(k).ravel() for k in (3, 10, 17)])  # 210 = 7 passes
    for p in range(7):
        assert sorted(idx[p * n:(p + 1) * n]) == list(range(n))
    a = np.random.default_rng(0).random(n)
    a[3] = 0.0
    a /= a.sum()
    weighted = _Problem(np.zeros((n, 4)), a, np.full(4, 1 / 4), batch, 1)
    counts = np.bincount(weighted.sample_passes(20000).ravel(), minlength=n)
    total = 20000 * batch
    assert counts[3] == 0
    assert np.all(np.abs(counts - total * a) <= 5 * np.sqrt(total * a) + 1)


# ---------------------------------------------------------------- validation
@pytest.mark.parametrize("kwargs, error, match", [
    (dict(lr=0.0), ValueError, "lr"),
    (dict(lr=-1.0), ValueError, "lr"),
    (dict(n_iter=0), ValueError, "n_iter"),
    (dict(max_iter=0), ValueError, "max_iter"),
    (dict(n_iter=2, max_iter=3), ValueError, "n_iter"),
    (dict(n_iter=1.5), TypeError, "n_iter"),
    (dict(batch_size=0), ValueError, "batch_size"),
    (dict(reg=-1.0), ValueError, "reg"),
    (dict(reg=float("nan")), ValueError, "reg"),
    (dict(tol=-1e-3), ValueError, "tol"),
    (dict(method="sgd"), ValueError, "method"),
    (dict(check_every=0), ValueError, "check_every"),
    (dict(b=[0.5, 0.5, 0.5]), ValueError, "b has 3 entries"),
    (dict(b=[0.3, 0.3]), ValueError, "equal total mass"),
    (dict(a=[1.0, -1.0, 1.0]), ValueError, "negative"),
])
def test_bad_input_semidual(kwargs, error, match):
    C = np.array([[0.0, 1.0], [1.0, 0.0], [0.5, 0.5]])
    args = dict(a=None, b=None)
    args.update(kwargs)
    with pytest.raises(error, match=match):
        otsolve.semidual_sgd(C, **args)


def test_bad_cost():
    with pytest.raises(ValueError, match="C contains nan"):
        otsolve.semidual_sgd([[0.0, np.nan]])
    with pytest.raises(ValueError, match="2-D"):
        otsolve.semidual_sgd([0.0, 1.0])


@pytest.mark.parametrize("sampler, match", [
    (lambda n, rng: rng.random((n, 2)), r"shape \(n, d\)"),
    (lambda n, rng: rng.random(n + 1), r"shape \(n, d\)"),
    (lambda n, rng: np.full(n, np.nan), "non-finite"),
    (lambda n, rng: rng.random((n, 1, 1)), r"shape \(n, d\)"),
])
def test_bad_sampler(sampler, match):
    with pytest.raises(ValueError, match=match):
        otsolve.semidiscrete_sgd(sampler, [0.2, 0.8], n_eval=100)


def test_bad_semidiscrete_arguments():
    ok = lambda n, rng: rng.random(n)  # noqa: E731
    with pytest.raises(TypeError, match="sample_source"):
        otsolve.semidiscrete_sgd(np.zeros(3), [0.2, 0.8])
    with pytest.raises(TypeError, match="sample_source"):
        otsolve.semidiscrete_sgd(lambda n, rng: ["a"] * n, [0.2, 0.8])
    with pytest.raises(ValueError, match="b has 3"):
        otsolve.semidiscrete_sgd(ok, [0.2, 0.8], b=[1, 1, 1])
    for kwargs, name in [(dict(lr=0), "lr"), (dict(n_iter=0), "n_iter"), (dict(batch_size=0), "batch_size"),
                         (dict(n_eval=0), "n_eval"), (dict(metric="l7"), "metric"), (dict(p=-1), "p")]:
        with pytest.raises((ValueError, TypeError), match=name):
            otsolve.semidiscrete_sgd(ok, [0.2, 0.8], **kwargs)


# ---------------------------------------------------------------- semi-discrete
Y1 = np.array([0.1, 0.5, 0.8])
B1 = np.array([0.2, 0.5, 0.3])


def uniform_01(n, rng):
    return rng.random(n)


def closed_form_1d(y, b, p):
    """U[0, 1] against sum_j b_j delta_{y_j} (y sorted): the monotone map sends the interval
    [B_{j-1}, B_j] (B = cumsum b) to y_j, so W = sum_j int |x - y_j|^p dx over it."""
    edges = np.concatenate([[0.0], np.cumsum(b)])

    def prim(x, yj):  # antiderivative of |x - yj|^p
        return np.sign(x - yj) * np.abs(x - yj) ** (p + 1) / (p + 1)

    return sum(prim(edges[j + 1], yj) - prim(edges[j], yj) for j, yj in enumerate(y)), edges[1:-1]


def monte_carlo_tol(res):
    """4 standard errors of the value, a mean of f over the evaluation samples, plus 1e-4 for
    the optimisation."""
    return 4 * res.f.std() / np.sqrt(len(res.f)) + 1e-4


def test_semidiscrete_laguerre_cells_1d():
    value, cuts = closed_form_1d(Y1, B1, 2)
    res = otsolve.semidiscrete_sgd(uniform_01, Y1, B1, seed=0)
    assert res.success
    assert res.value == pytest.approx(value, abs=monte_carlo_tol(res))
    # power-diagram boundaries: (t - y_j)^2 - g_j = (t - y_{j+1})^2 - g_{j+1} at the cuts t_j
    t = ((Y1[1:] ** 2 - Y1[:-1] ** 2) - (res.g[1:] - res.g[:-1])) / (2 * (Y1[1:] - Y1[:-1]))
    np.testing.assert_allclose(t, cuts, atol=5e-3)  # cell masses within 0.5% of b
    g_exact = np.concatenate([[0.0], np.cumsum((cuts - Y1[1:]) ** 2 - (cuts - Y1[:-1]) ** 2)])
    np.testing.assert_allclose(res.g - res.g.mean(), g_exact - g_exact.mean(), atol=3e-3)


def test_semidiscrete_p1_and_2d_points():
    value, _ = closed_form_1d(Y1, B1, 1)
    res = otsolve.semidiscrete_sgd(lambda n, rng: rng.random((n, 1)), Y1[:, None], B1, p=1, seed=1,
                                   n_eval=100000)
    assert res.value == pytest.approx(value, abs=monte_carlo_tol(res))


def test_semidiscrete_entropic_first_order_condition():
    """At the solution the implied cell masses int softmax_j(x) dx equal b, by quadrature."""
    reg = 0.02
    res = otsolve.semidiscrete_sgd(uniform_01, Y1, B1, reg=reg, seed=2)
    x = (np.arange(200000) + 0.5) / 200000  # midpoint rule on [0, 1]
    masses = softmax(np.log(B1) + (res.g - (x[:, None] - Y1) ** 2) / reg, axis=1).mean(0)
    np.testing.assert_allclose(masses, B1, atol=5e-3)
    value = (-reg * logsumexp(np.log(B1) + (res.g - (x[:, None] - Y1) ** 2) / reg, axis=1)).mean() + B1 @ res.g
    assert res.value == pytest.approx(value, abs=2e-4)  # the MC estimate of the same objective


def test_semidiscrete_matches_discrete_on_a_fine_grid():
    """A source quantised on 2000 points: semi-discrete g gives the discrete value (POT oracle)."""
    reg = 0.05
    x = (np.arange(2000) + 0.5) / 2000
    C = (x[:, None] - Y1) ** 2
    ref = entropic_oracle(C, np.full(2000, 1 / 2000), B1, reg)
    res = otsolve.semidiscrete_sgd(uniform_01, Y1, B1, reg=reg, seed=3)
    assert res.value == pytest.approx(ref, rel=3e-3)


# ---------------------------------------------------------------- certificate, any g (hypothesis)
def lp_oracle(C, a, b):
    """Exact OT by scipy's HiGHS: independent of otsolve."""
    from scipy.optimize import linprog
    n, m = C.shape
    A = np.vstack([np.kron(np.eye(n), np.ones(m)), np.kron(np.ones(n), np.eye(m))])
    return linprog(C.ravel(), A_eq=A, b_eq=np.concatenate([a, b]), bounds=(0, None), method="highs").fun


@settings(max_examples=25, deadline=None)
@given(n=st.integers(1, 7), m=st.integers(1, 7), reg=st.sampled_from([0.0, 0.05, 0.3, 1.0]),
       steps=st.integers(1, 12), seed=st.integers(0, 2**16))
def test_bounds_hold_at_any_iterate(n, m, reg, steps, seed):
    """Whatever g the solver stops at, value <= optimum <= value + duality_gap."""
    rng = np.random.default_rng(seed)
    C = rng.random((n, m))
    a, b = rng.random(n) + 0.05, rng.random(m) + 0.05
    a, b = a / a.sum(), b / b.sum()
    ref = entropic_oracle(C, a, b, reg) if reg > 0 else lp_oracle(C, a, b)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        res = otsolve.semidual_sgd(C, a, b, reg=reg, n_iter=steps, batch_size=2, seed=seed)
    tol = 1e-8  # the oracles' precision (Sinkhorn stopThr 1e-11 on marginals, HiGHS)
    assert res.value <= ref + tol
    assert res.value + res.duality_gap >= ref - tol

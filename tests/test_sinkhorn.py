"""Entropic OT (otsolve.sinkhorn, sinkhorn_points, sinkhorn_divergence) against independent
oracles: POT's log-domain Sinkhorn, POT's unbalanced Sinkhorn, GeomLoss, the exact solver,
objectives recomputed with numpy, finite differences."""
import importlib
import math
import tracemalloc
import warnings

import numpy as np
import ot
import pytest
from hypothesis import given, settings, strategies as st

import otsolve
from otsolve import ConvergenceWarning, Status

from oracles_sinkhorn import (entropic_dual, entropic_value, geomloss_divergence, kl,
                               plan_from_potentials, pot_divergence, pot_log_plan, unbalanced_value)

RTOL_POT = 1e-8      # the bar: both solvers converged to 1e-12 on the marginals
TOL = 1e-12


def _problem(n=40, m=30, seed=0, uniform=False):
    rng = np.random.default_rng(seed)
    x, y = rng.normal(size=(n, 2)), rng.normal(size=(m, 2)) * 0.8 + 0.5
    a = np.full(n, 1 / n) if uniform else rng.uniform(0.2, 1.0, n)
    b = np.full(m, 1 / m) if uniform else rng.uniform(0.2, 1.0, m)
    C = ot.dist(x, y)  # squared Euclidean, computed by POT, not by otsolve
    return x, y, a / a.sum(), b / b.sum(), C / C.max()


# --- against POT's log-domain Sinkhorn -----------------------------------------------------

@pytest.mark.parametrize("reg", [1e-1, 1e-2])
def test_plan_and_value_match_pot_log(reg):
    _, _, a, b, C = _problem()
    res = otsolve.sinkhorn(C, a, b, reg=reg, tol=TOL)
    P = pot_log_plan(a, b, C, reg)
    assert res.status == Status.OPTIMAL and res.marginal_error <= 1e-11
    np.testing.assert_allclose(res.plan, P, rtol=0, atol=RTOL_POT * P.max())
    # POT 0.9.7's sinkhorn2 returns the linear part <C, P> (our value_linear), not the objective
    lin = ot.sinkhorn2(a, b, C, reg, method="sinkhorn_log", stopThr=1e-14, numItermax=200_000)
    assert float(lin) == pytest.approx(float(np.sum(C * P)), rel=1e-12)
    assert res.value_linear == pytest.approx(float(lin), rel=RTOL_POT)
    assert res.value == pytest.approx(entropic_value(C, P, a, b, reg), rel=RTOL_POT)


@pytest.mark.parametrize("reg", [1e-1, 1e-2])
def test_certificate_fields(reg):
    _, _, a, b, C = _problem(seed=1)
    res = otsolve.sinkhorn(C, a, b, reg=reg, tol=TOL)
    # the plan is the one of the potentials (cost units) and the dual fields recompute
    np.testing.assert_allclose(res.plan, plan_from_potentials(res.f, res.g, C, a, b, reg),
                               rtol=1e-12, atol=1e-15)
    assert res.dual_value == pytest.approx(entropic_dual(res.f, res.g, C, a, b, reg), rel=1e-12)
    assert abs(res.duality_gap) <= 1e-10 * abs(res.value)
    assert res.max_dual_violation == pytest.approx(max((res.f[:, None] + res.g - C).max(), 0), abs=1e-14)
    assert a @ res.f == pytest.approx(b @ res.g, abs=1e-14)  # the normalisation of (f, g)
    err = max(np.abs(res.plan.sum(1) - a).sum(), np.abs(res.plan.sum(0) - b).sum())
    assert res.marginal_error == pytest.approx(err, rel=1e-6, abs=1e-16)


def test_envelope_gradient_is_the_plan():
    """d value / d C_ij = P_ij (envelope theorem), by central differences."""
    _, _, a, b, C = _problem(n=8, m=6, seed=2)
    res = otsolve.sinkhorn(C, a, b, reg=0.05, tol=1e-14)
    h = 1e-6
    for i, j in [(0, 0), (3, 2), (7, 5)]:
        E = np.zeros_like(C)
        E[i, j] = h
        up = otsolve.sinkhorn(C + E, a, b, reg=0.05, tol=1e-14).value
        down = otsolve.sinkhorn(C - E, a, b, reg=0.05, tol=1e-14).value
        assert (up - down) / (2 * h) == pytest.approx(res.plan[i, j], rel=1e-5, abs=1e-9)


def test_invariances():
    _, _, a, b, C = _problem(seed=3)
    res = otsolve.sinkhorn(C, a, b, reg=0.05, tol=TOL)
    swapped = otsolve.sinkhorn(C.T, b, a, reg=0.05, tol=TOL)
    assert swapped.value == pytest.approx(res.value, rel=1e-10)
    scaled = otsolve.sinkhorn(3.0 * C + 2.0, a, b, reg=0.15, tol=TOL)  # unit mass: 3 v + 2
    assert scaled.value == pytest.approx(3.0 * res.value + 2.0, rel=1e-10)
    plain = otsolve.sinkhorn(C, a, b, reg=0.05, tol=TOL, eps_scaling=False)
    np.testing.assert_allclose(plain.plan, res.plan, rtol=0, atol=1e-10 * res.plan.max())


def test_zero_weights_match_the_reduced_problem():
    _, _, a, b, C = _problem(seed=4)
    a[[0, 5]], b[3] = 0.0, 0.0
    a, b = a / a.sum(), b / b.sum()
    res = otsolve.sinkhorn(C, a, b, reg=0.05, tol=TOL)
    rows, cols = np.flatnonzero(a), np.flatnonzero(b)
    P = pot_log_plan(a[rows], b[cols], C[np.ix_(rows, cols)], 0.05)
    assert np.all(res.plan[[0, 5]] == 0) and np.all(res.plan[:, 3] == 0)
    np.testing.assert_allclose(res.plan[np.ix_(rows, cols)], P, rtol=0, atol=1e-8 * P.max())
    assert np.isfinite(res.f).all() and np.isfinite(res.g).all()


@settings(max_examples=25, deadline=None)
@given(n=st.integers(1, 7), m=st.integers(1, 7), seed=st.integers(0, 2**16),
       rel_reg=st.sampled_from([1.0, 0.1, 0.01]), integer_costs=st.booleans())
def test_random_small_problems(n, m, seed, rel_reg, integer_costs):
    """Any small problem: marginals to tol, zero entropic duality gap, exact <= <C,P> <= value."""
    rng = np.random.default_rng(seed)
    C = rng.integers(0, 4, size=(n, m)).astype(float) if integer_costs else rng.random((n, m))
    a, b = rng.random(n) + 0.1, rng.random(m) + 0.1
    a, b = a / a.sum(), b / b.sum()
    reg = rel_reg * max(C.max(), 1.0)
    res = otsolve.sinkhorn(C, a, b, reg=reg, tol=1e-10, max_iter=100_000)
    assert res.success and res.marginal_error <= 1e-9
    assert abs(res.duality_gap) <= 1e-9 * max(abs(res.value), 1.0)
    exact = float(np.sum(C * otsolve.exact(C, a, b).plan.toarray()))
    assert exact - 1e-9 <= res.value_linear <= res.value + 1e-12


# --- towards exact OT and stability -------------------------------------------------------

def test_value_approaches_exact_as_reg_vanishes():
    """exact <= value <= exact + reg * min(H(a), H(b)), since KL(P* | a b^T) <= min(H(a), H(b))."""
    _, _, a, b, C = _problem(n=50, m=50, seed=5)
    exact = otsolve.exact(C, a, b).value
    H = min(-(a * np.log(a)).sum(), -(b * np.log(b)).sum())
    gaps, linear_gaps = [], []
    for reg in (1e-2, 1e-3, 1e-4):
        res = otsolve.sinkhorn(C, a, b, reg=reg, tol=1e-9, max_iter=50_000)
        assert res.success
        assert exact - 1e-9 <= res.value_linear <= res.value <= exact + reg * H + 1e-9
        gaps.append(res.value - exact)
        linear_gaps.append(res.value_linear - exact)
    assert gaps[0] > gaps[1] > gaps[2] and linear_gaps[0] > linear_gaps[1] > linear_gaps[2]
    assert linear_gaps[2] < 1e-4 * exact


@pytest.mark.parametrize("rel_reg", [1e-1, 1e-2, 1e-3, 1e-4])
def test_no_nan_or_inf_at_small_reg(rel_reg):
    """n = 2000 as in the issue; a few iterations at each reg (convergence is not the point)."""
    rng = np.random.default_rng(6)
    x, y = rng.normal(size=(2000, 2)), rng.normal(size=(2000, 2)) + 2.0
    C = 1e6 * ot.dist(x, y)  # large costs: reg is relative, nothing may overflow
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        res = otsolve.sinkhorn(C, reg=rel_reg * C.max(), tol=1e-6, max_iter=25)
    for v in (res.value, res.value_linear, res.dual_value, res.marginal_error):
        assert math.isfinite(v)
    assert np.isfinite(res.f).all() and np.isfinite(res.g).all() and np.isfinite(res.plan).all()
    assert abs(res.plan.sum() - 1.0) <= res.marginal_error + 1e-12
    assert 0 < res.value_linear < C.max()


def test_small_reg_where_kernel_sinkhorn_fails():
    """POT's kernel Sinkhorn underflows at reg = 3e-4 of the cost (exp(-C/reg) = 0 on whole
    rows of distant clouds); the log domain converges."""
    x, y, a, b, _ = _problem(n=60, m=60, seed=7, uniform=True)
    C = ot.dist(x, y + 3.0)
    C /= C.max()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        P_kernel = ot.sinkhorn(a, b, C, 3e-4, stopThr=1e-9, numItermax=2000)
    res = otsolve.sinkhorn(C, a, b, reg=3e-4, tol=1e-9, max_iter=50_000)
    assert res.success and res.marginal_error <= 1e-9
    kernel_error = np.abs(np.nan_to_num(P_kernel).sum(1) - a).sum()
    assert not kernel_error <= 1e-9  # NaN or a visible marginal error


def _log_domain_only(monkeypatch):
    """Solve with the kept Gibbs kernel disabled: every soft-min is a log-domain pass."""
    problem = importlib.import_module("otsolve.entropic._problem")
    monkeypatch.setattr(problem, "KERNEL_MAX_PAIRS", -1)


@pytest.mark.parametrize("case", ["skewed", "zeros", "unbalanced", "tiny_reg", "symmetric"])
def test_kernel_scaling_matches_the_log_domain(case, monkeypatch):
    """The mat-vec path (kernel kept, rebuilt or squared) gives the log-domain fixed point, also
    where it must fall back: weights over 40 orders of magnitude, zero weights, reg = 1e-4."""
    rng = np.random.default_rng(11)
    _, _, a, b, C = _problem(n=70, m=50, seed=11)
    reg, reg_m = 1e-2, None
    if case == "skewed":
        a, b = 10.0 ** rng.uniform(-40, 0, 70), 10.0 ** rng.uniform(-40, 0, 50)
        a, b = a / a.sum(), b / b.sum()
    elif case == "zeros":
        a[[1, 7]], b[[0, 49]] = 0.0, 0.0
        a, b = a / a.sum(), b / b.sum()
    elif case == "unbalanced":
        a, reg_m = 2.0 * a, 0.3
    elif case == "tiny_reg":
        reg = 1e-4
    else:
        x = _problem(n=70)[0]
        C, b = ot.dist(x) / ot.dist(x).max(), a
    kwargs = dict(reg=reg, reg_m=reg_m, tol=1e-11, max_iter=100_000)
    kernel = otsolve.sinkhorn(C, a, b, **kwargs)
    _log_domain_only(monkeypatch)
    log = otsolve.sinkhorn(C, a, b, **kwargs)
    # at reg = 1e-4 tol 1e-11 sits at float64's precision floor (~16 ulps of |C| / reg): a run may
    # honestly stop there a little above tol (seen with freshly compiled kernels)
    floor = case == "tiny_reg"
    for res in (kernel, log):
        assert res.success or (floor and "precision floor" in res.message and res.marginal_error <= 1e-10)
    assert kernel.marginal_error <= (1e-10 if floor else 1e-11)
    np.testing.assert_allclose(kernel.plan, log.plan, rtol=0, atol=1e-9 * log.plan.max())
    assert kernel.value == pytest.approx(log.value, rel=1e-9, abs=1e-14)
    # at the floor the trajectory depends on the last ulps (a freshly compiled kernel and its
    # cached copy already differ there) and potentials along near-null modes on where it stopped
    for ours, ref, w in ((kernel.f, log.f, a), (kernel.g, log.g, b)):
        np.testing.assert_allclose(ours[w > 0], ref[w > 0], rtol=0, atol=(1e-6 if floor else 1e-7) * reg)


@pytest.mark.parametrize("case", ["outlier", "zero_weight_row"])
def test_kernel_stays_exact_over_many_annealing_levels(case):
    """A huge cost makes scale / reg ~ 1e9 (30 halvings of eps): squaring the kept kernel at every
    level would double its rounding error 30 times. The plan must still match POT's log-domain
    Sinkhorn, and its marginals (recomputed here) the tolerance."""
    rng = np.random.default_rng(21)
    x, y = rng.random((60, 2)), rng.random((50, 2))
    C = ot.dist(x, y)
    a, b = np.full(60, 1 / 60), np.full(50, 1 / 50)
    if case == "outlier":
        C[0, 0], reg = 1e6, 1e-3
    else:
        a[::3], b[::4] = 0.0, 0.0
        a, b = a / a.sum(), b / b.sum()
        C[0], reg = np.linspace(0, 1e6, 50), 1e-2
    res = otsolve.sinkhorn(C, a, b, reg=reg, tol=1e-11, max_iter=100_000)
    assert res.success
    rows, cols = np.flatnonzero(a), np.flatnonzero(b)
    implied = np.zeros_like(C)  # from f, g on the support (zero weights: 0 * exp(big) there)
    implied[np.ix_(rows, cols)] = plan_from_potentials(res.f[rows], res.g[cols], C[np.ix_(rows, cols)],
                                                       a[rows], b[cols], reg)
    for P in (res.plan, implied):
        assert max(np.abs(P.sum(1) - a).sum(), np.abs(P.sum(0) - b).sum()) <= 1e-10
    P = pot_log_plan(a[rows], b[cols], C[np.ix_(rows, cols)], reg)
    np.testing.assert_allclose(res.plan[np.ix_(rows, cols)], P, rtol=0, atol=1e-10 * P.max())


def test_skewed_weights_match_pot():
    """Weights over 12 orders of magnitude: same plan as POT's log-domain Sinkhorn."""
    rng = np.random.default_rng(12)
    _, _, _, _, C = _problem(n=40, m=30, seed=12)
    a, b = 10.0 ** rng.uniform(-12, 0, 40), 10.0 ** rng.uniform(-12, 0, 30)
    a, b = a / a.sum(), b / b.sum()
    res = otsolve.sinkhorn(C, a, b, reg=0.05, tol=TOL)
    P = pot_log_plan(a, b, C, 0.05)
    np.testing.assert_allclose(res.plan, P, rtol=0, atol=1e-8 * P.max())
    assert res.value_linear == pytest.approx(float((P * C).sum()), rel=RTOL_POT)


def test_kernel_is_kept_at_moderate_reg(monkeypatch):
    """Speed path in use: at reg = 3e-3 of the costs a log-domain pass builds the kernel at the
    first eps, one rebuilds it after MAX_SQUARINGS squarings and one at the last eps (a step by
    less than half), the rest are mat-vecs and squarings; at 1e-2 (no annealing: above 1/256 of
    the costs) one pass builds it. (The annealing; this small one would start from the exact potentials.)"""
    sk = importlib.import_module("otsolve.entropic.sinkhorn")
    monkeypatch.setattr(sk, "_exact_start", lambda *args: None)
    kernels = importlib.import_module("otsolve.entropic._kernels")
    rebuilds = []
    for name in ("softmin_rows", "softmin_cols"):
        original = getattr(kernels, name)
        monkeypatch.setattr(kernels, name, lambda *args, _f=original: rebuilds.append(
            args[-1].shape[0] > 0) or _f(*args))
    _, _, a, b, C = _problem(n=60, m=40, seed=13)
    res = otsolve.sinkhorn(C, a, b, reg=3e-3, tol=1e-10)
    assert res.success and res.n_iter > 10 and rebuilds == [True, True, True]
    rebuilds.clear()
    res = otsolve.sinkhorn(C, a, b, reg=1e-2, tol=1e-10)
    assert res.success and res.n_iter > 10 and rebuilds == [True]
    rebuilds.clear()  # zero weights: zero kernel lines, redone alone in the log domain inside the
    a[3], b[[0, 7]] = 0.0, 0.0  # compiled soft-min (scaled_lse): no pass over all of C, no rebuild
    res = otsolve.sinkhorn(C, a / a.sum(), b / b.sum(), reg=1e-2, tol=1e-10)
    assert res.success and res.n_iter > 10 and rebuilds == [True]
    assert not res.plan[3].any() and not res.plan[:, [0, 7]].any()


def test_relaxation_backs_off_when_the_plan_loses_its_mass():
    """Over-relaxed iterates can drift towards plans of no mass, where the L1 error saturates at
    the mass instead of growing 100x: the guard must still restore the last good iterate."""
    ls = importlib.import_module("otsolve.entropic.sinkhorn")
    relax, f, g = ls._Relaxation(mass=1.0), np.zeros(3), np.ones(3)
    for err in 0.5 * 0.9 ** np.arange(20):  # plain iterations contracting by 0.9: w is raised
        assert relax.update(err, f + err, g) is None
    omega = relax.omega
    assert omega > 1.5
    saved_err = relax.saved[0]
    for err in (0.3, 0.6, 0.9, 0.99):
        restored = relax.update(err, f, g)
        if restored is not None:
            break
    assert restored is not None and err == 0.99  # the first above 0.9 of the mass (100x saved: 8)
    assert np.allclose(restored[0], f + saved_err) and relax.omega == 1.0
    assert relax.cap == pytest.approx(1.0 + 0.9 * (omega - 1.0))  # w - 1 backs off by 10%


def test_relaxation_hint_is_taken_after_plain_steps():
    """A hint (the factor a coarser level reached) is taken after HINT_AFTER plain steps, with the
    iterate there as the fallback; without one the factor is raised from the window's estimate."""
    ls = importlib.import_module("otsolve.entropic.sinkhorn")
    f, g = np.zeros(3), np.ones(3)
    relax = ls._Relaxation(mass=1.0, hint=1.6)
    for k in range(1, ls.HINT_AFTER):
        assert relax.update(0.01 ** k, f + k, g) is None and relax.omega == 1.0
    assert relax.update(0.01 ** ls.HINT_AFTER, f + ls.HINT_AFTER, g) is None
    assert relax.omega == relax.peak == 1.6 and np.allclose(relax.saved[1], f + ls.HINT_AFTER)
    assert relax.update(0.95, f, g) is not None and relax.omega == 1.0  # above the guard: fallback
    relax = ls._Relaxation(mass=1.0)
    for k in range(ls.RELAX_SPAN + 1):
        assert relax.update(0.5 ** k, f + k, g) is None
    assert relax.omega == pytest.approx(2.0 / (1.0 + math.sqrt(0.5)))


def test_truncated_cascade_passes_the_coarse_relaxation_on(monkeypatch):
    """Each finer level of sinkhorn_points' truncated cascade is handed the largest over-relaxation
    of the levels before it as its hint (it needed 35 instead of 27 iterations to ramp up again at
    n = 2e4)."""
    ls = importlib.import_module("otsolve.entropic.sinkhorn")
    started, iterate = [], ls._iterate
    def spy(*args, hint=1.0, **kwargs):
        run = iterate(*args, hint=hint, **kwargs)
        started.append((hint, run.omega))
        return run
    monkeypatch.setattr(ls, "_iterate", spy)
    monkeypatch.setattr(ls._truncated, "COARSE_CLUSTERS", 64)
    rng = np.random.default_rng(3)
    x, y = rng.normal(size=(1500, 2)), rng.normal(size=(1400, 2)) + 1.0
    res = otsolve.sinkhorn_points(x, y, reg=0.05, tol=1e-7, truncate=True)
    assert res.success and len(started) >= 2
    (first, first_peak), *finer = started
    assert first == 1.0 and first_peak > 1.0
    assert all(start == max([first_peak] + [peak for _, peak in finer[:k]]) for k, (start, _) in enumerate(finer))
    plain = otsolve.sinkhorn_points(x, y, reg=0.05, tol=1e-7, truncate=False)
    assert res.value == pytest.approx(plain.value, rel=1e-6)


def test_max_iter_returns_the_best_iterate(monkeypatch):
    """A problem Sinkhorn cannot finish in max_iter (a row and a column of cost 1e8): the relaxed
    run must not hand back a worse pair than plain steps reach (it once stopped at 13x the
    error, value 3.9e6 for an optimum of 1e6)."""
    rng = np.random.default_rng(0)
    C = ot.dist(rng.random((120, 2)), rng.random((100, 2)))
    C[:, 0] = C[0, :] = 1e8
    with pytest.warns(ConvergenceWarning):
        relaxed = otsolve.sinkhorn(C, reg=1e-2, tol=1e-10, max_iter=3000)
    monkeypatch.setattr(importlib.import_module("otsolve.entropic.sinkhorn"), "RELAX_MAX", 1.0)
    with pytest.warns(ConvergenceWarning):
        plain = otsolve.sinkhorn(C, reg=1e-2, tol=1e-10, max_iter=3000)
    assert relaxed.status == "max_iter" and relaxed.marginal_error <= 1.01 * plain.marginal_error
    assert abs(relaxed.value_linear - 1e6) <= 1e-2 * 1e6


def test_max_iter_reports_and_warns():
    _, _, a, b, C = _problem(seed=8)
    with pytest.warns(ConvergenceWarning, match="max_iter=3"):
        res = otsolve.sinkhorn(C, a, b, reg=1e-3, max_iter=3)
    assert res.status == Status.MAX_ITER and not res.success and res.n_iter == 3
    assert "max_iter=3" in res.message and res.marginal_error > 1e-9


# --- point clouds without the matrix ------------------------------------------------------

@pytest.mark.parametrize("metric,p", [("euclidean", 2), ("euclidean", 1), ("sqeuclidean", 1),
                                      ("cityblock", 1), ("euclidean", 1.5)])
@pytest.mark.parametrize("on_the_fly", [True, False])
def test_points_match_the_matrix(metric, p, on_the_fly, monkeypatch):
    """Costs recomputed in every pass, or (small clouds, the default) computed once."""
    if on_the_fly:
        monkeypatch.setattr(importlib.import_module("otsolve.entropic._problem"), "DENSE_MAX_PAIRS", 0)
    x, y, a, b, _ = _problem(seed=9)
    C = otsolve.cost_matrix(x, y, p=p, metric=metric)
    ref = otsolve.sinkhorn(C, a, b, reg=0.05 * C.max(), tol=TOL)
    res = otsolve.sinkhorn_points(x, y, a, b, reg=0.05 * C.max(), p=p, metric=metric, tol=TOL)
    assert res.plan is None and res.success
    assert res.value == pytest.approx(ref.value, rel=1e-10)
    assert res.value_linear == pytest.approx(ref.value_linear, rel=1e-10)
    assert res.dual_value == pytest.approx(ref.dual_value, rel=1e-10)
    np.testing.assert_allclose(res.f, ref.f, rtol=0, atol=1e-9 * C.max())
    with_plan = otsolve.sinkhorn_points(x, y, a, b, reg=0.05 * C.max(), p=p, metric=metric,
                                        tol=TOL, return_plan=True)
    np.testing.assert_allclose(with_plan.plan, ref.plan, rtol=0, atol=1e-9 * ref.plan.max())


def test_points_memory_is_linear():
    """No (n, m) array is allocated by numpy: a 3000 x 3000 float matrix would be 72 MB."""
    rng = np.random.default_rng(10)
    x, y = rng.normal(size=(3000, 2)), rng.normal(size=(3000, 2)) + 1.0
    otsolve.sinkhorn_points(x[:5], y[:5], reg=1.0)  # compile outside the measurement
    tracemalloc.start()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        res = otsolve.sinkhorn_points(x, y, reg=0.5, tol=1e-6, max_iter=5)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert np.isfinite(res.value) and peak < 5e6


def test_wasserstein_sinkhorn_method():
    x, y, a, b, _ = _problem(seed=11)
    res = otsolve.wasserstein(x, y, a, b, method="sinkhorn", reg=1e-3, tol=1e-9)
    exact = otsolve.wasserstein(x, y, a, b)
    assert res.value == pytest.approx(res.value_linear ** 0.5, rel=1e-14)
    assert exact.value <= res.value <= exact.value * 1.01
    with pytest.raises(TypeError, match="reg"):
        otsolve.wasserstein(x, y, method="sinkhorn")


# --- unbalanced ---------------------------------------------------------------------------

@pytest.mark.parametrize("reg_m", [0.5, 5.0])
def test_unbalanced_matches_pot(reg_m):
    _, _, a, b, C = _problem(seed=12)
    b = 2.0 * b  # different total masses
    reg = 0.1
    res = otsolve.sinkhorn(C, a, b, reg=reg, reg_m=reg_m, tol=TOL)
    # POT: <C,P> + reg KL(P | a b^T) + reg_m KL(P 1 | a) + reg_m KL(P^T 1 | b), reg_type "kl"
    P = ot.unbalanced.sinkhorn_unbalanced(a, b, C, reg, reg_m, method="sinkhorn",
                                          numItermax=100_000, stopThr=1e-15)
    assert res.success
    np.testing.assert_allclose(res.plan, P, rtol=0, atol=RTOL_POT * P.max())
    assert res.value == pytest.approx(unbalanced_value(C, P, a, b, reg, reg_m), rel=RTOL_POT)
    assert abs(res.duality_gap) <= 1e-10 * abs(res.value)


def test_unbalanced_limits_to_balanced():
    _, _, a, b, C = _problem(seed=13)
    bal = otsolve.sinkhorn(C, a, b, reg=0.05, tol=TOL)
    inf = otsolve.sinkhorn(C, a, b, reg=0.05, tol=TOL, reg_m=math.inf)
    assert inf.value == bal.value and np.array_equal(inf.plan, bal.plan)
    big = otsolve.sinkhorn(C, a, b, reg=0.05, tol=1e-11, reg_m=1e6)
    assert big.value == pytest.approx(bal.value, rel=1e-5)
    np.testing.assert_allclose(big.plan, bal.plan, rtol=0, atol=1e-5 * bal.plan.max())


def test_unbalanced_accepts_unequal_masses_balanced_does_not():
    _, _, a, b, C = _problem(seed=14)
    with pytest.raises(ValueError, match="equal total mass"):
        otsolve.sinkhorn(C, a, 3 * b, reg=0.1)
    res = otsolve.sinkhorn(C, a, 3 * b, reg=0.1, reg_m=1.0)
    assert res.success and 1.0 < res.plan.sum() < 3.0


# --- Sinkhorn divergence ------------------------------------------------------------------

@pytest.mark.parametrize("reg", [0.5, 0.1])
@pytest.mark.parametrize("on_the_fly", [True, False])
def test_divergence_matches_pot_oracle(reg, on_the_fly, monkeypatch):
    if on_the_fly:
        monkeypatch.setattr(importlib.import_module("otsolve.entropic._problem"), "DENSE_MAX_PAIRS", 0)
    x, y, a, b, _ = _problem(n=50, m=40, seed=15)
    res = otsolve.sinkhorn_divergence(x, y, a, b, reg=reg, tol=TOL)
    assert res.success and res.plan is None
    assert res.value == pytest.approx(pot_divergence(x, y, a, b, reg), rel=1e-8)
    assert abs(res.duality_gap) <= 1e-9 * res.value


@pytest.mark.parametrize("p,blur", [(2, 0.5), (2, 0.2), (1, 0.3)])
def test_divergence_matches_geomloss(p, blur):
    """GeomLoss: cost |x - y|^p / p and eps = blur^p, i.e. ours / p with reg = p * blur^p. Its
    annealing stops without iterating to convergence: agreement to 1e-3 relative."""
    x, y, a, b, _ = _problem(n=60, m=50, seed=16)
    res = otsolve.sinkhorn_divergence(x, y, a, b, reg=p * blur ** p, p=p)
    assert res.value / p == pytest.approx(geomloss_divergence(x, y, a, b, blur, p), rel=1e-3)


def test_divergence_zero_for_identical_and_positive_otherwise():
    x, _, a, _, _ = _problem(n=50, m=40, seed=17)
    same = otsolve.sinkhorn_divergence(x, x.copy(), a, a.copy(), reg=0.05)
    assert same.success and abs(same.value) <= 1e-9
    np.testing.assert_allclose(same.f, same.f.mean(), atol=1e-8)  # debiased potentials ~ const
    rng = np.random.default_rng(18)
    for k in range(1, 4):
        y = rng.normal(size=(30, 2)) * k
        assert otsolve.sinkhorn_divergence(x, y, a, reg=0.5).value > 0


# --- bad input and no mutation ------------------------------------------------------------

@pytest.mark.parametrize("reg,err,match", [(0.0, ValueError, "reg must be > 0"),
                                           (-1.0, ValueError, "reg must be > 0"),
                                           (np.nan, ValueError, "reg must be finite"),
                                           (np.inf, ValueError, "reg must be finite"),
                                           (None, TypeError, "reg must be a real number"),
                                           ("0.1", TypeError, "reg must be a real number")])
def test_bad_reg(reg, err, match):
    _, _, a, b, C = _problem()
    with pytest.raises(err, match=match):
        otsolve.sinkhorn(C, a, b, reg=reg)
    with pytest.raises(err, match=match):
        otsolve.sinkhorn_divergence(C[:, :2], C[:, :2], reg=reg)


@pytest.mark.parametrize("kwargs,err,match", [
    (dict(b=np.ones(4) / 4), ValueError, "b has 4 entries"),
    (dict(a=-np.ones(40)), ValueError, "a has a negative weight"),
    (dict(C=np.full((3, 3), np.nan)), ValueError, "C contains nan"),
    (dict(C=np.ones(5)), ValueError, "C must be a 2-D"),
    (dict(tol=-1.0), ValueError, "tol must be >= 0"),
    (dict(max_iter=0), ValueError, "max_iter must be >= 1"),
    (dict(max_iter=2.5), TypeError, "max_iter must be an integer"),
    (dict(eps_scaling="yes"), TypeError, "eps_scaling"),
    (dict(reg_m=0.0), ValueError, "reg_m must be > 0"),
    (dict(reg_m=np.nan), ValueError, "reg_m must be finite"),
])
def test_bad_input(kwargs, err, match):
    _, _, a, b, C = _problem()
    args = dict(C=C, a=a, b=b, reg=0.1)
    args.update(kwargs)
    with pytest.raises(err, match=match):
        otsolve.sinkhorn(**args)


def test_bad_points():
    with pytest.raises(ValueError, match="same dimension"):
        otsolve.sinkhorn_points(np.zeros((3, 2)), np.zeros((3, 3)), reg=0.1)
    with pytest.raises(ValueError, match="unknown metric"):
        otsolve.sinkhorn_divergence(np.zeros((3, 2)), np.zeros((3, 2)), reg=0.1, metric="cosine")
    with pytest.raises(ValueError, match="b has 2 entries"):
        otsolve.sinkhorn_points(np.zeros((3, 2)), np.zeros((3, 2)), b=[0.5, 0.5], reg=0.1)


def test_inputs_not_mutated():
    x, y, a, b, C = _problem(seed=19)
    copies = [v.copy() for v in (x, y, a, b, C)]
    otsolve.sinkhorn(C, a, b, reg=0.05)
    otsolve.sinkhorn(C, a, 2 * b, reg=0.05, reg_m=1.0)
    otsolve.sinkhorn_points(x, y, a, b, reg=0.05)
    otsolve.sinkhorn_divergence(x, y, a, b, reg=0.05)
    for v, c in zip((x, y, a, b, C), copies):
        assert np.array_equal(v, c)


def test_kl_oracle_is_nonnegative_and_zero_on_equal():
    """The oracle's own sanity: KL(p | p) = 0, KL >= 0."""
    p = np.array([0.2, 0.3, 0.5])
    assert kl(p, p) == 0.0 and kl(p, np.array([0.3, 0.3, 0.4])) > 0


def test_symmetric_problem_uses_averaged_updates_and_matches_pot():
    # OT(a, a) on a symmetric cost (a divergence's debiasing term) takes the averaged update
    rng = np.random.default_rng(77)
    x = rng.normal(size=(60, 2))
    a = rng.random(60) + 0.1
    a /= a.sum()
    C = otsolve.cost_matrix(x, x)
    res = otsolve.sinkhorn(C, a, a, reg=0.05, tol=1e-12)
    # POT's alternating log-domain Sinkhorn does not reach tol 1e-12 here within 1e5 iterations,
    # so the oracle is the optimality condition itself: the plan has marginals (a, a) and the
    # form P_ij = a_i a_j exp((u_i + v_j - C_ij) / reg), i.e. this matrix is additively separable
    M = np.log(res.plan) + C / 0.05 - np.log(a)[:, None] - np.log(a)[None, :]
    assert np.abs(M - M[:, :1] - M[:1, :] + M[0, 0]).max() < 1e-8
    assert np.abs(res.plan.sum(0) - a).sum() < 1e-12 and np.abs(res.plan.sum(1) - a).sum() < 1e-12
    assert np.allclose(res.f, res.g) and res.n_iter < 200  # alternating updates need thousands
    P = ot.sinkhorn(a, a, C, 0.05, method="sinkhorn_log", stopThr=1e-9, numItermax=5000)
    assert np.allclose(res.plan, P, rtol=0, atol=1e-6)  # POT stops with marginal error 2e-6 here

"""Issue 16: Sinkhorn at small reg (the Newton phase of otsolve/entropic/_newton.py). Marginal errors
are recomputed here from the returned plans with numpy; plain Sinkhorn is the same solver with the
Newton phase switched off."""
import importlib
import warnings

import numpy as np
import pytest
import scipy.optimize
import scipy.sparse.linalg

import otsolve
from otsolve import ConvergenceWarning, Status
from otsolve.entropic import _newton

TOL = 1e-9  # the default tol: L1 marginal error relative to the mass


def _clouds(n, seed):
    """The issue's hard cases: N(0, I) vs N(1, I) in 2-D, cost |x - y|^2, uniform weights."""
    rng = np.random.default_rng(seed)
    x, y = rng.normal(size=(n, 2)), rng.normal(size=(n, 2)) + 1.0
    return ((x[:, None, :] - y[None, :, :]) ** 2).sum(axis=2)


def _l1(P, a, b):
    return max(np.abs(P.sum(axis=1) - a).sum(), np.abs(P.sum(axis=0) - b).sum())


def _plain(monkeypatch):
    monkeypatch.setattr(_newton, "available", lambda cost, reg_m, tol: False)


@pytest.mark.parametrize("n, seed", [(256, s) for s in range(6)] + [(384, s) for s in range(6)])
def test_hard_cases_reach_optimal(n, seed):
    C = _clouds(n, seed)
    a = np.full(n, 1.0 / n)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        res = otsolve.sinkhorn(C, reg=0.05)
    assert res.status == Status.OPTIMAL
    # 2x: the plan's rows are summed in another order than the solver's mat-vecs
    assert _l1(res.plan, a, a) <= 2 * TOL
    assert res.n_iter <= 1000  # plain Sinkhorn: 565 .. 10,000+ iterations on these seeds


def test_hardest_case_n1000_reg_001():
    C = _clouds(1000, 0)
    a = np.full(1000, 1e-3)
    res = otsolve.sinkhorn(C, reg=0.01)  # reg = 1.5e-4 x max C: plain needs more than 10,000
    assert res.status == Status.OPTIMAL and _l1(res.plan, a, a) <= 2 * TOL


@pytest.mark.parametrize("seed", [0, 2, 4])
def test_newton_and_plain_agree(seed, monkeypatch):
    """Seeds where plain Sinkhorn converges too: the same plan and value to the tolerance."""
    C = _clouds(256, seed)
    fast = otsolve.sinkhorn(C, reg=0.05)
    _plain(monkeypatch)
    slow = otsolve.sinkhorn(C, reg=0.05)
    assert fast.status == slow.status == Status.OPTIMAL and fast.n_iter < slow.n_iter
    # both plans are within tol (L1, mass 1) of the entropic solution: their difference is
    # of that order; the objective is flat at the solution (its change is second order)
    assert np.abs(fast.plan - slow.plan).sum() <= 1e-7
    assert abs(fast.value - slow.value) <= 1e-9 * abs(slow.value)
    assert np.allclose(fast.f - fast.f.mean(), slow.f - slow.f.mean(), atol=1e-7 * np.abs(C).max())


def test_fallback_to_plain_steps(monkeypatch):
    """Every Newton step rejected: plain steps take over (Newton retried after doubling waits);
    the run still converges, its iterations counted honestly."""
    calls = []

    def reject(prob, p, d, T_g, max_trials):
        calls.append(p.err)
        return None, 1

    monkeypatch.setattr(_newton, "_line_search", reject)
    C = _clouds(256, 2)
    res = otsolve.sinkhorn(C, reg=0.05)
    a = np.full(256, 1.0 / 256)
    assert len(calls) >= 2 and res.status == Status.OPTIMAL and _l1(res.plan, a, a) <= 2 * TOL
    _plain(monkeypatch)
    plain = otsolve.sinkhorn(C, reg=0.05)
    assert np.abs(res.plan - plain.plan).sum() <= 1e-7


def test_stalled_newton_hands_over(monkeypatch):
    """Steps accepted but the error never halves: after PROGRESS_STEPS steps plain ones take over."""
    steps = []
    original = _newton._line_search

    def tiny(prob, p, d, T_g, max_trials):
        steps.append(p.err)
        return original(prob, p, 1e-6 * d, T_g, max_trials)

    monkeypatch.setattr(_newton, "_line_search", tiny)
    res = otsolve.sinkhorn(_clouds(256, 2), reg=0.05)
    assert res.status == Status.OPTIMAL and len(steps) >= _newton.PROGRESS_STEPS


@pytest.mark.parametrize("max_iter", [31, 35, 60, 120])
def test_budget_inside_newton_is_honest(max_iter):
    C = _clouds(256, 1)
    with pytest.warns(ConvergenceWarning, match=f"max_iter={max_iter}"):
        res = otsolve.sinkhorn(C, reg=0.05, max_iter=max_iter)
    a = np.full(256, 1.0 / 256)
    assert res.status == Status.MAX_ITER and res.n_iter <= max_iter
    assert np.isfinite(res.plan).all() and np.isfinite(res.value)
    assert np.abs(res.plan.sum(axis=0) - a).sum() <= 1e-12  # the closing step: exact columns
    assert res.marginal_error == pytest.approx(_l1(res.plan, a, a), rel=1e-6, abs=1e-15)


def test_newton_on_weighted_and_zero_weights():
    rng = np.random.default_rng(3)
    C = _clouds(200, 3)
    a, b = rng.uniform(0.2, 1.0, 200), rng.uniform(0.2, 1.0, 200)
    a[::17], b[::13] = 0.0, 0.0
    a, b = a / a.sum(), b / b.sum()
    res = otsolve.sinkhorn(C, a, b, reg=0.05)
    assert res.status == Status.OPTIMAL and _l1(res.plan, a, b) <= 2 * TOL
    assert not res.plan[a == 0].any() and not res.plan[:, b == 0].any()


def test_newton_keeps_the_potentials_bounded():
    """Constants are the null space of the Newton system: rounding once let CG drift f to 1e8
    at reg 0.5 (8 digits lost, NUMERICAL_ERROR); the directions are now projected."""
    rng = np.random.default_rng(4)
    x, y = rng.normal(size=(4, 2)), rng.normal(size=(3, 2))
    C = ((x[:, None, :] - y[None, :, :]) ** 2).sum(axis=2)
    for h in (0.0, 1e-5, -1e-5):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)  # tol 1e-13 may end at the floor
            res = otsolve.sinkhorn(C + h, reg=0.5, tol=1e-13)
        assert res.status != Status.NUMERICAL_ERROR and res.marginal_error <= 1e-12
        assert np.abs(res.f).max() <= 10 * np.abs(C).max()


def test_dense_newton_steps_agree_with_cg(monkeypatch):
    """n = 64 at reg 1e-4 x max C: the Newton systems are solved by Cholesky (_dense_direction);
    the result is optimal on its plan and agrees with the CG-only Newton phase (plain Sinkhorn does
    not finish here in 100,000 iterations)."""
    C = _clouds(64, 0)
    C /= C.max()
    a = np.full(64, 1.0 / 64)
    calls = []
    dense = _newton._dense_direction
    monkeypatch.setattr(_newton, "_dense_direction", lambda *args: calls.append(1) or dense(*args))
    res = otsolve.sinkhorn(C, reg=1e-4)
    assert calls and res.status == Status.OPTIMAL
    assert _l1(res.plan, a, a) <= 2 * TOL
    monkeypatch.setattr(_newton, "DENSE_MAX_ROWS", 0)
    monkeypatch.setattr(_newton, "_sparse_direction", lambda *args: None)
    cg = otsolve.sinkhorn(C, reg=1e-4)
    assert cg.status == Status.OPTIMAL and res.n_iter < cg.n_iter
    # both plans are within tol of the solution, whose rows are nearly a permutation at this reg:
    # their L1 distance is a few tol
    assert np.abs(res.plan - cg.plan).sum() <= 1e-8
    assert abs(res.value - cg.value) <= 1e-9 * abs(cg.value)


def _gibbs_certificate(C, a, b, res, reg):
    """The entropic solution is the one plan of the form a_i b_j exp((f_i + g_j - C_ij) / reg) with
    marginals a and b: rebuild it from the returned potentials with numpy (no solver code), check
    that it is the returned plan and that its marginals are within tol."""
    w = a[:, None] * b[None, :]
    with np.errstate(over="ignore", invalid="ignore"):  # zero weights: no mass, whatever their potentials
        P = np.where(w > 0, w * np.exp((res.f[:, None] + res.g[None, :] - C) / reg), 0.0)
    # 1e-9: the exponent (f + g - C) / reg carries ~1e-16 |C| / reg = 1e-12 relative error at reg
    # 1e-4 x max C, the solver's plan was scaled from a kept kernel (a few hundred ulps of that)
    assert np.abs(P - res.plan).sum() <= 1e-9
    assert _l1(P, a, b) <= 2 * TOL


@pytest.mark.parametrize("n, seed", [(64, s) for s in range(3)] + [(128, s) for s in range(3)]
                         + [(256, 0), (256, 1), (512, 0)])
def test_small_n_at_reg_1e4_reaches_optimal(n, seed):
    """The issue's small-n end: reg = 1e-4 x max C, default tol, n = 64..512: optimal, the marginal
    error recomputed from the returned plan, and the plan certified by its Gibbs form."""
    C = _clouds(n, seed)
    C /= C.max()
    a = np.full(n, 1.0 / n)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        res = otsolve.sinkhorn(C, reg=1e-4)
    assert res.status == Status.OPTIMAL
    assert _l1(res.plan, a, a) <= 2 * TOL
    _gibbs_certificate(C, a, a, res, 1e-4)


@pytest.mark.parametrize("n", [128, 256])
def test_dense_newton_agrees_with_plain_at_reg_1e3(n, monkeypatch):
    """reg = 1e-3 x max C, where plain Sinkhorn (Newton off) finishes too: both at tol 1e-10 give
    the same plan, value and potentials."""
    C = _clouds(n, 0)
    C /= C.max()
    fast = otsolve.sinkhorn(C, reg=1e-3, tol=1e-10)
    _plain(monkeypatch)
    slow = otsolve.sinkhorn(C, reg=1e-3, tol=1e-10, max_iter=100_000)
    assert fast.status == slow.status == Status.OPTIMAL and fast.n_iter < slow.n_iter
    assert np.abs(fast.plan - slow.plan).sum() <= 1e-9
    assert abs(fast.value - slow.value) <= 1e-9 * abs(slow.value)
    # 1e-8 = 1e-5 reg: rows coupled weakly (condition of the dual Hessian) amplify the marginal
    # errors (1e-10 x mass) in the potentials
    assert np.allclose(fast.f, slow.f, rtol=0, atol=1e-8)


def test_dense_direction_is_the_newton_step():
    """At reg 0.1 x max C (no rows nearly decoupled) the Cholesky direction solves the Newton system
    formed the textbook way, diag(P 1) - P diag(1/b) P^T, solved here by numpy's least squares (its
    null space, the constants, removed from both)."""
    rng = np.random.default_rng(5)
    n, m = 40, 30
    C = rng.random((n, m))
    a, b = rng.uniform(0.5, 1.0, n), rng.uniform(0.5, 1.0, m)
    a, b = a / a.sum(), b / b.sum()
    reg = 0.1
    f = 0.01 * rng.normal(size=n)
    g = -reg * np.log((a[:, None] * np.exp((f[:, None] - C) / reg)).sum(axis=0))  # g = T(f): exact columns
    P = a[:, None] * b[None, :] * np.exp((f[:, None] + g[None, :] - C) / reg)
    rows = P.sum(axis=1)
    err = np.abs(rows - a).sum()
    prob = _newton.Problem(None, a, b, np.log(a), np.log(b), 1.0 / b, reg, TOL, np.empty((n, m)))
    point = _newton._Point(f, g, P, np.ones(n), np.ones(m), rows, err, 0.0)  # K = P, u = v = 1
    d = _newton._dense_direction(prob, point)
    H = np.diag(rows) - P @ np.diag(1.0 / b) @ P.T
    expected = np.linalg.lstsq(H, reg * (a - rows), rcond=None)[0]
    d, expected = d - d.mean(), expected - expected.mean()
    # the Levenberg-Marquardt term E = LM_DAMPING err diag(P 1) moves the solution by at most
    # |H^-1| |E| / (1 - |H^-1| |E|) of it, |H^-1| = 1 / the smallest eigenvalue off the constants
    lam = np.linalg.eigvalsh(H)[1]
    shift = _newton.LM_DAMPING * err / a.sum() * rows.max() / lam
    assert 0 < shift < 0.1
    assert np.linalg.norm(d - expected) <= 2 * shift / (1 - shift) * np.linalg.norm(expected) + 1e-12


def test_compiled_softmin_repairs_underflowing_lines():
    """scaled_lse redoes, in the log domain, the lines whose kernel sums underflow: compared with
    scipy's logsumexp over the costs (the kernel K was built for potentials far from the h of the
    call, so most of one row's terms are below 1e-100)."""
    from scipy.special import logsumexp
    from otsolve.entropic import _kernels
    rng = np.random.default_rng(6)
    n, m, inv_reg = 20, 15, 100.0
    C = rng.random((n, m))
    for side, count in ((0, n), (1, m)):
        hF, hG = np.zeros(n), np.zeros(m)
        (hF if side == 0 else hG)[4] = -400.0  # line 4 of K is e^-400 x its true size: it underflows
        K = np.exp(hF[:, None] + hG[None, :] - C * inv_reg)
        absorbed, other = (hG, hF) if side == 0 else (hF, hG)
        h = rng.normal(size=m if side == 0 else n)
        lse = np.zeros(count)
        done = _kernels.scaled_lse(K, side, h, absorbed, other, 1e-100, lse, C, inv_reg, 0.25)
        terms = h[None, :] - C * inv_reg if side == 0 else h[:, None] - C * inv_reg
        assert done == 1 and np.allclose(lse, logsumexp(terms, axis=1 - side), rtol=1e-12, atol=1e-12)
    hF, hG = np.zeros(n), np.zeros(m)
    hF[4] = -400.0
    K = np.exp(hF[:, None] + hG[None, :] - C * inv_reg)
    h = rng.normal(size=m)
    lse = np.zeros(n)  # without costs to redo them from: 0, lse untouched
    assert _kernels.scaled_lse(K, 0, h, hG, hF, 1e-100, lse, np.empty((0, 0)), inv_reg, 0.25) == 0
    assert not lse.any()
    hF[:10] = -400.0  # half the rows low: above max_bad, the kernel must be rebuilt (-1)
    K = np.exp(hF[:, None] + hG[None, :] - C * inv_reg)
    assert _kernels.scaled_lse(K, 0, h, hG, hF, 1e-100, lse, C, inv_reg, 0.25) == -1


def test_longer_steps_only_when_they_lower_the_error(monkeypatch):
    """_extend doubles an accepted full Newton step only while the error falls and Phi does not:
    every point it returns is at least as good as the full step, and doubling happens at small reg."""
    seen = []
    extend = _newton._extend

    def spy(prob, p, q, d, spread, T_g, max_trials, rounding):
        r, trials = extend(prob, p, q, d, spread, T_g, max_trials, rounding)
        seen.append((q.err, q.phi, r.err, r.phi, trials, rounding))
        return r, trials

    monkeypatch.setattr(_newton, "_extend", spy)
    C = _clouds(128, 2)
    C /= C.max()
    res = otsolve.sinkhorn(C, reg=1e-4)
    assert res.status == Status.OPTIMAL and seen
    assert all(r_err <= q_err and r_phi >= q_phi - tiny for q_err, q_phi, r_err, r_phi, _, tiny in seen)
    assert any(r_err < q_err for q_err, _, r_err, _, _, _ in seen)  # doubled at least once


def _weighted_problem(seed):
    """n != m, weights with zeros; odd seeds round the points to a grid (costs with many ties)."""
    rng = np.random.default_rng(seed)
    n, m = 40 + 13 * seed, 31 + 7 * seed
    x, y = rng.normal(size=(n, 2)), rng.normal(size=(m, 2)) + 1.0
    if seed % 2:
        x, y = np.round(2.0 * x), np.round(2.0 * y)
    C = ((x[:, None, :] - y[None, :, :]) ** 2).sum(axis=2)
    a, b = rng.random(n) * (rng.random(n) > 0.2), rng.random(m) * (rng.random(m) > 0.2)
    return C, a / a.sum(), b / b.sum()


@pytest.mark.parametrize("seed, rel", [(0, 1e-4), (1, 1e-4), (2, 1e-4), (3, 1e-4), (-1, 1e-3), (-2, 3e-4)])
def test_exact_start_agrees_with_the_annealed_run(seed, rel, monkeypatch):
    """Where the exact solution is cheap (weighted, small, reg <= 2e-4 x the costs; uniform weights
    on n = m: an assignment) the run starts from its potentials instead of annealing: the same plan
    and value as the annealed run, and the plan is certified by its Gibbs form."""
    sk = importlib.import_module("otsolve.entropic.sinkhorn")
    if seed >= 0:
        C, a, b = _weighted_problem(seed)
    else:
        C = _clouds(100, -seed)
        a = b = np.full(100, 0.01)
    reg = rel * C.max()
    starts, exact_start = [], sk._exact_start
    monkeypatch.setattr(sk, "_exact_start", lambda *args: starts.append(exact_start(*args)) or starts[-1])
    warm = otsolve.sinkhorn(C, a, b, reg=reg, tol=1e-11)
    assert len(starts) == 1 and starts[0] is not None
    monkeypatch.setattr(sk, "_exact_start", lambda *args: None)
    annealed = otsolve.sinkhorn(C, a, b, reg=reg, tol=1e-11, max_iter=100_000)
    assert warm.status == annealed.status == Status.OPTIMAL
    assert np.abs(warm.plan - annealed.plan).sum() <= 1e-9
    assert abs(warm.value - annealed.value) <= 1e-10 * abs(annealed.value)
    _gibbs_certificate(C, a, b, warm, reg)


@pytest.mark.parametrize("seed", range(4))
def test_exact_start_reaches_optimal_at_reg_1e5(seed):
    """reg = 1e-5 x max C, close to exact OT (the annealed run needed more than max_iter on some of
    these): optimal with default settings, certified by the Gibbs form, its linear value within
    reg x (log n + log m) of the exact optimum (the entropic bias bound, with HiGHS as the oracle)."""
    C, a, b = _weighted_problem(seed)
    reg = 1e-5 * C.max()
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        res = otsolve.sinkhorn(C, a, b, reg=reg)
    assert res.status == Status.OPTIMAL
    _gibbs_certificate(C, a, b, res, reg)
    lp = scipy.optimize.linprog(C.ravel(), A_eq=np.vstack([np.kron(np.eye(len(a)), np.ones(len(b))),
                                                           np.kron(np.ones(len(a)), np.eye(len(b)))]),
                                b_eq=np.concatenate([a, b]), bounds=(0, None), method="highs")
    assert lp.fun <= res.value_linear + 1e-12 and res.value_linear - lp.fun <= reg * np.log(len(a) * len(b))


def test_sparse_preconditioner_above_512_rows(monkeypatch):
    """n = 700 at reg 1e-4 x max C: the sparse-preconditioned steps are taken, the plan is certified
    by its Gibbs form, and it agrees with the Jacobi-CG Newton phase (the fallback when the
    truncated system cannot be factored)."""
    calls, sparse = [], _newton._sparse_direction
    monkeypatch.setattr(_newton, "_sparse_direction", lambda *args: calls.append(1) or sparse(*args))
    C = _clouds(700, 1)
    C /= C.max()
    a = np.full(700, 1.0 / 700)
    res = otsolve.sinkhorn(C, reg=1e-4)
    assert res.status == Status.OPTIMAL and len(calls) > 0
    _gibbs_certificate(C, a, a, res, 1e-4)

    def singular(*args, **kwargs):
        raise RuntimeError("Factor is exactly singular")
    monkeypatch.setattr(scipy.sparse.linalg, "splu", singular)
    jacobi = otsolve.sinkhorn(C, reg=1e-4)
    assert jacobi.status == Status.OPTIMAL and res.n_iter < jacobi.n_iter
    assert np.abs(res.plan - jacobi.plan).sum() <= 1e-8
    assert abs(res.value - jacobi.value) <= 1e-9 * abs(jacobi.value)


def test_truncated_system_is_the_hessian_when_nothing_is_left_out(monkeypatch):
    """With KEEP = 0 the sparse system is the Newton system formed densely in numpy (plus the
    damping, 0 at zero error), entry by entry; with KEEP > 0, that of the kept entries."""
    monkeypatch.setattr(_newton, "KEEP", 0.0)
    monkeypatch.setattr(_newton, "COUPLINGS_MAX", np.inf)  # a dense plan here
    rng = np.random.default_rng(3)
    n, m = 40, 30
    P = rng.random((n, m)) ** 4
    P /= P.sum(axis=0)  # columns exact: sums b = 1 / m
    P /= m
    a, b = P.sum(axis=1), P.sum(axis=0)
    prob = _newton.Problem(None, a, b, None, None, 1.0 / b, 1e-3, 1e-9, np.empty((0, 0)))
    point = _newton._Point(None, None, P, np.ones(n), np.ones(m), a, 0.0, 0.0)
    L = _newton._truncated_system(prob, point, P, np.ones(n), np.ones(m))
    H = np.diag(a) - P @ np.diag(1.0 / b) @ P.T
    assert np.allclose(L.toarray(), H, rtol=1e-12, atol=1e-15)
    monkeypatch.setattr(_newton, "KEEP", 0.5)  # most entries left out: the Newton system of the rest,
    kept = np.where(P >= 0.5 * a[:, None], P, 0.0)  # with the row sums of the whole plan
    L = _newton._truncated_system(prob, point, P, np.ones(n), np.ones(m))
    assert np.allclose(L.toarray(), np.diag(a) - kept @ np.diag(1.0 / b) @ kept.T, rtol=1e-12, atol=1e-15)
    assert L.nnz < H.size

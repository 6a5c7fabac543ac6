"""Issue 16: Sinkhorn at small reg (the Newton phase of otsolve/entropic/_newton.py). Marginal errors
are recomputed here from the returned plans with numpy; plain Sinkhorn is the same solver with the
Newton phase switched off."""
import warnings

import numpy as np
import pytest

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


def test_dense_newton_steps_agree_with_plain(monkeypatch):
    """n = 64 at reg 1e-4 x max C: CG runs past 2 n iterations, so the next Newton systems are solved
    by Cholesky (_dense_direction); the result is optimal on its plan and agrees with the CG-only
    Newton phase (plain Sinkhorn does not finish here in 100,000 iterations)."""
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
    cg = otsolve.sinkhorn(C, reg=1e-4)
    assert cg.status == Status.OPTIMAL and res.n_iter < cg.n_iter
    assert np.abs(res.plan - cg.plan).sum() <= 1e-8
    assert abs(res.value - cg.value) <= 1e-9 * abs(cg.value)

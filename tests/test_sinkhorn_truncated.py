"""Kernel truncation in sinkhorn_points (truncate=True): against the untruncated solver, POT, and
the full kernel recomputed with numpy (the certified bound of the skipped mass must hold)."""
import warnings

import numpy as np
import ot
import pytest
from scipy.special import logsumexp

import otsolve
from otsolve import ConvergenceWarning, Status
from otsolve.entropic import _kernels
from otsolve.entropic._truncated import TruncatedPointCost

from oracles_sinkhorn import plan_from_potentials

TOL = 1e-6


def _clouds(n, kind, seed=0):
    rng = np.random.default_rng(seed)
    if kind == "uniform":
        x, y = rng.random((n, 2)), rng.random((n, 2))
    else:
        x, y = rng.normal(size=(n, 2)), rng.normal(size=(n, 2)) + 1.0
    both = np.concatenate([x, y])
    return x, y, float(np.sum((both.max(0) - both.min(0)) ** 2))


def _implied_marginal_error(res, x, y, a, b, reg):
    """L1 marginal error of the full plan a_i b_j exp((f_i + g_j - C_ij) / reg), from POT's costs."""
    P = plan_from_potentials(res.f, res.g, ot.dist(x, y), a, b, reg)
    return max(np.abs(P.sum(1) - a).sum(), np.abs(P.sum(0) - b).sum())


@pytest.mark.parametrize("kind", ["uniform", "gauss"])
def test_truncated_matches_full_solver(kind):
    x, y, diam2 = _clouds(2000, kind)  # the full solver on its dense kernel
    reg = 1e-3 * diam2
    rng = np.random.default_rng(1)
    a, b = rng.uniform(0.5, 1.5, len(x)), rng.uniform(0.5, 1.5, len(y))
    a[:5] = 0.0  # zero weights: rows without mass
    a, b = a / a.sum(), b / b.sum()
    res = otsolve.sinkhorn_points(x, y, a, b, reg=reg, tol=TOL, truncate=True)
    full = otsolve.sinkhorn_points(x, y, a, b, reg=reg, tol=1e-10, truncate=False)
    assert res.status == Status.OPTIMAL and "kernel truncation" in res.message
    # the certified error (kept pairs + bound of the skipped ones) holds for the full implied plan
    implied = _implied_marginal_error(res, x, y, a, b, reg)
    assert implied <= res.marginal_error <= TOL
    alive = a > 0
    assert np.abs(res.f - full.f)[alive].max() <= 1e-3 * reg
    assert np.abs(res.g - full.g).max() <= 1e-3 * reg
    assert abs(res.value - full.value) <= 10 * res.marginal_error * diam2
    assert np.all(np.isfinite(res.f)) and np.all(np.isfinite(res.g))


def test_truncated_matches_pot_at_moderate_reg():
    x, y, diam2 = _clouds(1500, "gauss", seed=3)
    reg = 0.01 * diam2
    a = b = np.full(len(x), 1.0 / len(x))
    res = otsolve.sinkhorn_points(x, y, reg=reg, tol=1e-9, truncate=True)
    C = ot.dist(x, y)
    P = ot.sinkhorn(a, b, C, reg, method="sinkhorn_log", stopThr=1e-11, numItermax=20000)
    assert res.status == Status.OPTIMAL
    assert abs(res.value_linear - float((P * C).sum())) <= 1e-6 * abs(res.value_linear)
    assert np.abs(plan_from_potentials(res.f, res.g, C, a, b, reg) - P).sum() <= 1e-6


@pytest.mark.parametrize("guess_shift", [0.0, 60.0, -60.0, np.nan])
def test_skipped_mass_bound_holds(guess_shift):
    """The kernel's bound of the skipped terms is an upper bound of the true remainder, for any
    guess of the log-sums (too high guesses are redone, too low ones keep more)."""
    x, y, diam2 = _clouds(1200, "gauss", seed=5)
    reg, theta = 2e-3 * diam2, 6.0  # a small theta: many pairs skipped
    rng = np.random.default_rng(2)
    h = np.log(rng.uniform(0.5, 1.0, len(y))) + rng.normal(size=len(y))
    lse_true = logsumexp(h[None, :] - ot.dist(x, y) / reg, axis=1)
    cost = TruncatedPointCost(x, y, 0, 2.0, theta)
    lse = lse_true + guess_shift
    cost.softmin(0, h, 1.0 / reg, lse)
    skipped = np.exp(lse_true) - np.exp(lse)  # the true sum of the skipped terms
    bound = np.exp(cost.log_dropped[0])
    assert np.all(lse <= lse_true + 1e-12)
    assert np.all(skipped <= bound * (1 + 1e-9) + 1e-12 * np.exp(lse_true))
    if guess_shift == 0.0:  # a good guess: the test skips something (too high ones can end keeping all)
        assert (skipped > 0).any() and bound.max() > 0


def test_plan_stats_bound_holds():
    x, y, diam2 = _clouds(1000, "uniform", seed=7)
    reg = 1e-3 * diam2
    a = b = np.full(1000, 1e-3)
    res = otsolve.sinkhorn_points(x, y, reg=reg, tol=1e-9, truncate=False)
    cost = TruncatedPointCost(x, y, 0, 2.0, 5.0)
    _, stats, cols = cost.plan_stats(res.f, res.g, np.log(a), np.log(b), 1.0 / reg)
    P = plan_from_potentials(res.f, res.g, ot.dist(x, y), a, b, reg)
    row_skip, col_skip = np.abs(P.sum(1) - stats[:, 0]).sum(), np.abs(P.sum(0) - cols).sum()
    assert 0 < row_skip <= cost.dropped_mass[0] and 0 < col_skip <= cost.dropped_mass[1]
    assert np.all(stats[:, 0] <= P.sum(1) * (1 + 1e-12))


def test_truncated_max_iter_is_honest():
    x, y, diam2 = _clouds(2000, "gauss", seed=4)
    with pytest.warns(ConvergenceWarning):
        res = otsolve.sinkhorn_points(x, y, reg=1e-3 * diam2, tol=1e-9, max_iter=40, truncate=True)
    assert res.status == Status.MAX_ITER and "max_iter" in res.message and res.n_iter == 40
    assert np.isfinite(res.value) and np.isfinite(res.marginal_error) and res.marginal_error > 1e-9


def test_truncated_tiny_reg_stays_finite():
    x, y, diam2 = _clouds(1500, "uniform", seed=6)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        res = otsolve.sinkhorn_points(x, y, reg=1e-7 * diam2, tol=1e-6, max_iter=60, truncate=True)
    assert res.status in (Status.MAX_ITER, Status.OPTIMAL)
    for v in (res.value, res.value_linear, res.dual_value, res.marginal_error):
        assert np.isfinite(v)
    assert np.all(np.isfinite(res.f)) and np.all(np.isfinite(res.g))


def test_truncated_plan_on_request_is_evaluated_on_all_pairs():
    x, y, diam2 = _clouds(800, "uniform", seed=8)
    reg = 2e-3 * diam2
    res = otsolve.sinkhorn_points(x, y, reg=reg, tol=1e-8, truncate=True, return_plan=True)
    a = np.full(800, 1 / 800)
    P = plan_from_potentials(res.f, res.g, ot.dist(x, y), a, a, reg)
    assert res.status == Status.OPTIMAL and "kernel truncation" not in res.message
    assert np.allclose(res.plan, P, rtol=1e-9, atol=1e-18)


def test_automatic_truncation_above_the_dense_size(monkeypatch):
    from otsolve.entropic import _truncated
    monkeypatch.setattr(_truncated, "TRUNCATE_MIN_PAIRS", 2**22)  # from 2**26 pairs: a smaller test
    x, y, diam2 = _clouds(2100, "uniform", seed=9)  # 2100^2 pairs > 2^22: no dense matrix
    res = otsolve.sinkhorn_points(x, y, reg=1e-3 * diam2, tol=TOL)
    assert res.status == Status.OPTIMAL and "kernel truncation" in res.message
    loose = otsolve.sinkhorn_points(x[:300], y[:300], reg=1e-3 * diam2, tol=TOL)
    assert "kernel truncation" not in loose.message  # dense size: the kept-kernel solver


def test_truncate_bad_input():
    x = np.zeros((4, 2))
    with pytest.raises(TypeError, match="truncate"):
        otsolve.sinkhorn_points(x, x + 1, reg=0.1, truncate="yes")
    with pytest.raises(ValueError, match="truncate"):
        otsolve.sinkhorn_points(x, x + 1, reg=0.1, reg_m=1.0, truncate=True)


def test_truncated_does_not_mutate_inputs():
    x, y, diam2 = _clouds(600, "gauss", seed=10)
    x0, y0 = x.copy(), y.copy()
    otsolve.sinkhorn_points(x, y, reg=1e-2 * diam2, tol=TOL, truncate=True)
    assert np.array_equal(x, x0) and np.array_equal(y, y0)


def test_kernel_skips_nothing_at_large_theta():
    x, y, diam2 = _clouds(300, "gauss", seed=11)
    reg = 0.01 * diam2
    h = np.zeros(300)
    cost = TruncatedPointCost(x, y, 0, 2.0, 1e4)
    lse = np.zeros(300)
    cost.softmin(0, h, 1.0 / reg, lse)
    assert np.allclose(lse, logsumexp(-ot.dist(x, y) / reg, axis=1), rtol=1e-13, atol=1e-13)
    assert np.all(np.isneginf(cost.log_dropped[0])) and _kernels.GUESS_SLACK > 0


def test_cascade_levels_are_nested_clusterings():
    from otsolve.entropic._truncated import cascade
    rng = np.random.default_rng(12)
    x = rng.normal(size=(40_000, 2))
    w = rng.uniform(0.0, 1.0, 40_000)
    w[:100] = 0.0
    levels = cascade(x, w / w.sum())
    assert [len(m) for _, m, _ in levels][:2] == [2048, 16384] and levels[-1][0] is x
    for (pts, mass, _), (fine, fine_mass, parent) in zip(levels, levels[1:]):
        assert np.all(parent >= 0) or np.all(fine_mass[parent < 0] == 0)
        live = parent >= 0
        np.testing.assert_allclose(np.bincount(parent[live], fine_mass[live], len(mass)), mass, rtol=1e-12)
        centre = np.stack([np.bincount(parent[live], fine_mass[live] * fine[live, k], len(mass))
                           for k in range(2)], axis=1) / mass[:, None]
        np.testing.assert_allclose(centre, pts, rtol=1e-9, atol=1e-12)

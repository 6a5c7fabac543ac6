"""Every iterative solver stopped by its budget returns finite values, a plan of the right mass
and an honest status; the stall rules of the stochastic solvers never claim optimality alone."""
import importlib
import re
import warnings

import numpy as np
import pytest

import otsolve
from otsolve import ConvergenceWarning, Status


def clouds(n, m, seed, d=2):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, d)), rng.normal(size=(m, d)) + 0.5


def stopped(fn, *args, **kwargs):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = fn(*args, **kwargs)
    return res, [w for w in caught if issubclass(w.category, ConvergenceWarning)]


def assert_honest(res, warned, max_iter):
    fields = [res.value, res.value_linear, res.marginal_error, res.dual_value, res.duality_gap,
              res.max_dual_violation]
    assert np.isfinite(fields).all(), fields
    assert np.isfinite(res.f).all() and np.isfinite(res.g).all()
    if res.status == Status.OPTIMAL:
        assert not warned
    else:
        assert res.status == Status.MAX_ITER and len(warned) == 1
        assert f"max_iter={max_iter}" in res.message and re.search(r"reg=\S+", res.message)
    assert res.n_iter <= max_iter


@pytest.mark.parametrize("seed", range(3))
def test_sinkhorn_stopped_anywhere_in_the_ladder_is_finite_with_exact_columns(seed):
    """The issue's case: a budget ending inside epsilon scaling gave NaN / inf plans."""
    x, y = clouds(40, 30, seed)
    C = otsolve.cost_matrix(x, y)
    rng = np.random.default_rng(seed)
    a, b = rng.random(40) + 0.1, rng.random(30) + 0.1
    a, b = a / a.sum(), b / b.sum()
    for max_iter in range(1, 21):
        res, warned = stopped(otsolve.sinkhorn, C, a, b, reg=1e-3, max_iter=max_iter)
        assert_honest(res, warned, max_iter)
        assert res.status == Status.MAX_ITER
        # exact columns, to the rounding of the vectorised exp and of the sums (~1e-12)
        np.testing.assert_allclose(res.plan.sum(axis=0), b, rtol=1e-10, atol=0)
        assert np.isfinite(res.plan).all() and res.plan.sum() == pytest.approx(1.0, rel=1e-12)
        # value and value_linear are those of the returned plan
        P = res.plan
        nz = P > 0
        kl = (P[nz] * np.log(P[nz] / np.outer(a, b)[nz])).sum() - P.sum() + 1.0
        assert res.value_linear == pytest.approx((P * C).sum(), rel=1e-10)
        assert res.value == pytest.approx((P * C).sum() + 1e-3 * kl, rel=1e-9)


def test_stopped_message_names_the_level(monkeypatch):
    # the annealing (this small one would start at the exact potentials)
    sk = importlib.import_module("otsolve.entropic.sinkhorn")
    monkeypatch.setattr(sk, "_exact_start", lambda *args: None)
    x, y = clouds(50, 50, 0)
    C = otsolve.cost_matrix(x, y)
    res, _ = stopped(otsolve.sinkhorn, C, reg=0.01, max_iter=3)
    level = float(re.search(r"at reg=(\S+) of the annealing ladder", res.message).group(1))
    assert level > 0.01 and "target reg=0.01" in res.message
    res, _ = stopped(otsolve.sinkhorn, C, reg=0.01, max_iter=30)
    assert "at reg=0.01 " in res.message


@pytest.mark.parametrize("max_iter", range(1, 21))
def test_point_cloud_paths_stopped_are_finite(max_iter):
    x, y = clouds(30, 25, 4)
    for fn, kwargs in ((otsolve.sinkhorn_points, {}), (otsolve.sinkhorn_divergence, {}),
                       (otsolve.wasserstein, dict(method="sinkhorn"))):
        res, warned = stopped(fn, x, y, reg=1e-3, max_iter=max_iter, **kwargs)
        assert np.isfinite([res.value, res.value_linear, res.duality_gap]).all(), fn
        assert res.status == Status.MAX_ITER and len(warned) == 1
    res, _ = stopped(otsolve.sinkhorn_points, x, y, reg=1e-3, max_iter=max_iter, return_plan=True)
    np.testing.assert_allclose(res.plan.sum(axis=0), np.full(25, 1 / 25), rtol=1e-10)


@pytest.mark.parametrize("max_iter", range(1, 21))
def test_unbalanced_stopped_is_finite_and_bounded(max_iter):
    x, y = clouds(50, 50, 5)
    C = otsolve.cost_matrix(x, y)
    a, b = np.full(50, 1 / 50), np.full(50, 2 / 50)
    res, warned = stopped(otsolve.sinkhorn, C, a, b, reg=0.01, reg_m=1.0, max_iter=max_iter)
    assert res.status == Status.MAX_ITER and len(warned) == 1
    assert np.isfinite(res.plan).all() and np.isfinite(res.value)
    # the plan's columns sit at their fixed point b exp(-g / reg_m) <= b exp(max(-g) / reg_m);
    # bounded: no more than a few times the larger mass
    assert 0 < res.plan.sum() <= 3 * b.sum()


def test_tol_zero_runs_exactly_max_iter():
    x, y = clouds(30, 30, 6)
    C = otsolve.cost_matrix(x, y)
    res, warned = stopped(otsolve.sinkhorn, C, reg=0.1, tol=0.0, max_iter=40)
    assert res.status == Status.MAX_ITER and res.n_iter == 40 and len(warned) == 1
    res, warned = stopped(otsolve.semidual_sgd, C, reg=0.1, tol=0.0, n_iter=7, check_every=1, seed=0)
    assert res.status == Status.MAX_ITER and res.n_iter == 7 and len(warned) == 1
    for tol in (-1.0, float("nan")):
        with pytest.raises(ValueError, match="tol"):
            otsolve.sinkhorn(C, reg=0.1, tol=tol)


def test_asgd_stall_is_not_optimal_unless_certified():
    """The issue's case: ASGD's stall rule said optimal at a certified gap 17x tol."""
    x = np.random.RandomState(0).randn(10, 2)
    C = ((x[:, None] - x[None]) ** 2).sum(-1)
    for seed in [151, *range(20)]:
        res, warned = stopped(otsolve.semidual_sgd, C, reg=1.0, method="asgd", seed=seed)
        certified = res.duality_gap <= 1e-3 * res.value
        assert res.success == certified, (seed, res)
        if not res.success:
            assert res.status == Status.MAX_ITER and len(warned) == 1
            assert "stall" in res.message or "n_iter" in res.message


@pytest.mark.parametrize("method", ["sag", "asgd"])
@pytest.mark.parametrize("reg", [0.0, 0.05])
def test_semidual_status_agrees_with_certificate(method, reg):
    for seed in range(4):
        rng = np.random.default_rng(seed)
        C = rng.random((12 + seed, 9 + 2 * seed))
        res, _ = stopped(otsolve.semidual_sgd, C, reg=reg, method=method, seed=seed)
        if res.success:
            assert res.duality_gap <= 1e-3 * abs(res.value) + 1e-15
        ref = otsolve.exact(C).value
        if reg == 0:
            assert res.value <= ref + 1e-12  # a lower bound in any case


@pytest.mark.parametrize("max_iter", range(1, 21))
def test_stochastic_budgets_are_honest(max_iter):
    x, y = clouds(20, 15, 7)
    C = otsolve.cost_matrix(x, y)
    for method in ("sag", "asgd"):
        for reg in (0.0, 0.1):
            res, warned = stopped(otsolve.semidual_sgd, C, reg=reg, method=method, n_iter=max_iter,
                                  seed=1)
            assert np.isfinite([res.value, res.duality_gap, res.marginal_error]).all()
            assert res.success == (res.duality_gap <= 1e-3 * abs(res.value))
    res, warned = stopped(otsolve.semidiscrete_sgd, lambda n, rng: rng.random(n), [0.2, 0.7],
                          n_iter=max_iter, seed=0, n_eval=500)
    assert res.status == Status.MAX_ITER and np.isfinite(res.value) and len(warned) == 1


def test_empty_weights_say_none_means_uniform():
    C = np.ones((3, 4))
    with pytest.raises(ValueError, match="pass None for uniform weights"):
        otsolve.exact(C, a=[])
    with pytest.raises(ValueError, match="pass None for uniform weights"):
        otsolve.sinkhorn(C, b=[], reg=0.1)

"""Invariances, total mass and extreme inputs: no wrong answer labelled optimal (issue 15)."""
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import otsolve
from otsolve import ConvergenceWarning, Status
from oracles import lp_transport


def quiet(fn, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return fn(*args, **kwargs)


def random_problem(seed, n=12, m=9):
    rng = np.random.default_rng(seed)
    a, b = rng.random(n) + 0.05, rng.random(m) + 0.05
    return rng.random((n, m)), a / a.sum(), b / b.sum()


# ---------------------------------------------------------------- exact
@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10**6), t=st.sampled_from([1e3, 1e6, 1e9, 1e11, 1e12, -1e11]),
       s=st.sampled_from([1e-9, 1e-3, 1e3, 1e9]))
def test_exact_offset_and_scale_invariance(seed, t, s):
    C, a, b = random_problem(seed)
    lp = lp_transport(C, a, b)[0]
    Ct = C + t
    shifted = otsolve.exact(Ct, a, b)
    assert shifted.status == Status.OPTIMAL
    # the plan of C + t is optimal for C, up to the rounding of C + t itself (C's differences
    # are known to an ulp of t)
    assert (shifted.plan.toarray() * C).sum() <= lp + 4 * np.spacing(abs(t)) + 1e-12
    assert shifted.value == pytest.approx(lp + t, rel=1e-12, abs=8 * np.spacing(abs(t)))
    assert shifted.max_dual_violation <= 1e-9  # certificate holds on the differences
    scaled = otsolve.exact(s * C, a, b)
    assert scaled.value == pytest.approx(s * lp, rel=1e-9)
    assert scaled.max_dual_violation <= 1e-9 * s


def test_exact_warm_start_shift_changes_nothing():
    C = np.random.default_rng(0).random((50, 50))
    cold = otsolve.exact(C)
    for s in (1e6, 1e12, -1e12):
        warm = otsolve.exact(C, warm_start=(np.full(50, s), np.full(50, -s)))
        assert warm.status == Status.OPTIMAL and warm.value == pytest.approx(cold.value, rel=1e-12)
        f, g = cold.potentials
        again = otsolve.exact(C, warm_start=(f + s, g - s))
        assert again.value == pytest.approx(cold.value, rel=1e-12)


def test_exact_batch_reduces_offsets_too():
    C = np.random.default_rng(0).random((30, 30))
    base, shifted = otsolve.exact_batch(np.stack([C, C + 1e11]))
    assert shifted.value == pytest.approx(base.value + 1e11, rel=1e-15)
    assert (shifted.plan.toarray() * C).sum() == pytest.approx(base.value, abs=1e-4)


# ---------------------------------------------------------------- semi-dual
def test_semidual_stopping_is_shift_invariant():
    C = np.random.default_rng(0).random((40, 30))
    base = otsolve.semidual_sgd(C, reg=0.01, seed=0)
    shifted = quiet(otsolve.semidual_sgd, C + 1000.0, reg=0.01, seed=0)
    assert shifted.n_iter == base.n_iter  # the same steps: only the stopping test could differ
    assert shifted.value - 1000.0 == pytest.approx(base.value, rel=1e-8)
    if shifted.success:
        assert shifted.duality_gap <= 1e-3 * (shifted.value - 1000.0) + 1e-9
    lp = otsolve.exact(C).value
    zero = quiet(otsolve.semidual_sgd, C + 1000.0, seed=0)
    assert zero.value - 1000.0 <= lp + 1e-9 and zero.value - 1000.0 >= lp - 5e-3 * lp


@pytest.mark.parametrize("mass", [0.5, 1000.0])
def test_semidual_matches_sinkhorn_objective_at_any_mass(mass):
    C, a, b = random_problem(3, 15, 12)
    reg = 0.05
    ref = otsolve.sinkhorn(C, mass * a, mass * b, reg=reg, tol=1e-12).value
    res = quiet(otsolve.semidual_sgd, C, mass * a, mass * b, reg=reg, seed=0, tol=1e-6)
    assert res.value <= ref + 1e-9 * abs(ref)  # a lower bound of the same objective
    assert res.value == pytest.approx(ref, rel=1e-4)
    assert res.value + res.duality_gap >= ref - 1e-9 * abs(ref)


def test_semidual_tiny_reg_is_solved_as_zero():
    C, a, b = random_problem(4, 20, 15)
    lp = lp_transport(C, a, b)[0]
    for reg in (1e-19, 1e-300):
        res = quiet(otsolve.semidual_sgd, C, a, b, reg=reg, seed=0)
        assert "solved as reg = 0" in res.message
        assert res.value <= lp + 1e-12 and res.duality_gap >= -1e-12
        assert res.success == (res.duality_gap <= 1e-3 * res.value)


def test_sag_reg0_zero_weight_columns_get_feasible_potentials():
    rng = np.random.default_rng(25)
    C = rng.random((30, 20))[8:, 5:]
    a, b = rng.random(22), rng.random(15)
    b[[2, 9]] = 0.0
    a, b = a / a.sum(), b / b.sum()
    res = quiet(otsolve.semidual_sgd, C, a, b, seed=0)
    assert res.max_dual_violation <= 1e-12
    assert np.all(res.f[:, None] + res.g[None, :] <= C + 1e-12)
    lp = lp_transport(C, a, b)[0]
    assert res.value <= lp + 1e-12
    if res.success:  # optimal only with a certificate that bounds the true error
        assert lp - res.value <= 1e-3 * res.value + 1e-12


def test_semidiscrete_cost_range_is_blockwise_exact():
    from otsolve.stochastic.semidiscrete import BLOCK_PAIRS, _cost_range
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(300, 2)), rng.normal(size=(BLOCK_PAIRS // 100 + 7, 2))
    C = otsolve.cost_matrix(x, y)
    assert _cost_range(x, y, 0, 2.0) == (C.min(), C.max())


# ---------------------------------------------------------------- Sinkhorn
@pytest.mark.parametrize("mass", [1e-20, 1e-6, 1.0, 1e6])
def test_sinkhorn_tol_is_relative_to_the_mass(mass):
    C, a, b = random_problem(5, 30, 25)
    res = otsolve.sinkhorn(C, mass * a, mass * b, reg=0.05)
    unit = otsolve.sinkhorn(C, a, b, reg=0.05)
    # the plan is homogeneous in the mass (P_M = M P_1): the same run, to rounding
    assert res.status == Status.OPTIMAL and abs(res.n_iter - unit.n_iter) <= 3
    assert res.marginal_error <= 2e-9 * mass
    np.testing.assert_allclose(res.plan / mass, unit.plan, rtol=0, atol=1e-8 * unit.plan.max())
    np.testing.assert_allclose(res.plan.sum(axis=1), mass * a, rtol=1e-8)


def test_sinkhorn_offset_changes_no_iteration():
    C = np.random.default_rng(0).random((50, 50))
    base = otsolve.sinkhorn(C, reg=0.01)
    for t in (1e6, 1e10, -1e8):
        shifted = otsolve.sinkhorn(C + t, reg=0.01)
        assert shifted.status == Status.OPTIMAL and shifted.n_iter == base.n_iter
        # C + t is C to an ulp of t, so the exponents (C_ij + t) / reg to spacing(t) / reg
        rtol = 10 * np.spacing(abs(t)) / 0.01 + 1e-9
        np.testing.assert_allclose(shifted.plan, base.plan, rtol=rtol, atol=1e-30)
        assert shifted.value_linear - t == pytest.approx(base.value_linear, abs=10 * np.spacing(abs(t)))
        assert shifted.max_dual_violation <= base.max_dual_violation + 10 * np.spacing(abs(t))


def test_sinkhorn_unbalanced_precision_floor_stops_honestly():
    C = np.random.default_rng(0).random((50, 50))
    a, b = np.full(50, 1 / 50), np.full(50, 1.5 / 50)
    with pytest.warns(ConvergenceWarning, match="precision floor"):
        res = otsolve.sinkhorn(C, a, b, reg=0.01, reg_m=1e9)
    assert res.status == Status.MAX_ITER and res.n_iter < 2000 and np.isfinite(res.value)


@pytest.mark.parametrize("reg", [1e6, 1e12, 1e100, 1e300])
def test_sinkhorn_large_reg_keeps_the_objective_above_the_linear_cost(reg):
    C, a, b = random_problem(6, 20, 15)
    res = otsolve.sinkhorn(C, a, b, reg=reg)
    product = float(a @ C @ b)  # the plan tends to a b^T
    assert res.status == Status.OPTIMAL and np.isfinite([res.value, res.dual_value]).all()
    assert res.value >= res.value_linear
    assert res.value_linear == pytest.approx(product, rel=1e-9 + 10.0 / reg)  # P = ab^T (1 + O(C / reg))
    assert res.value - res.value_linear <= max(1e-12, 10.0 / reg)  # reg KL ~ Var / (2 reg)


@pytest.mark.parametrize("reg", [5e-324, 1e-300, 1e-20])
def test_sinkhorn_reg_below_float64_resolution_is_refused(reg):
    C, a, b = random_problem(7)
    for call in (lambda: otsolve.sinkhorn(C, a, b, reg=reg),
                 lambda: otsolve.sinkhorn_points(C[:, :2], C[:, 2:4], reg=reg),
                 lambda: otsolve.sinkhorn_divergence(C[:, :2], C[:, 2:4], reg=reg)):
        with pytest.raises(ValueError, match="reg"):
            call()


def test_sinkhorn_subnormal_costs_are_finite():
    C, a, b = random_problem(8)
    for scale, reg in ((1e-310, 1e-300), (1e-300, 1e-302)):
        res = otsolve.sinkhorn(C * scale, a, b, reg=reg)
        ref = otsolve.sinkhorn(C, a, b, reg=reg / scale)
        assert res.status == ref.status and res.value / scale == pytest.approx(ref.value, rel=1e-9)


def test_symmetric_point_clouds_take_the_averaged_path():
    x = np.random.default_rng(9).normal(size=(300, 2))
    C = otsolve.cost_matrix(x, x)
    points = otsolve.sinkhorn_points(x, x, reg=0.01)
    matrix = otsolve.sinkhorn(C, reg=0.01)
    assert points.status == Status.OPTIMAL and points.n_iter == matrix.n_iter < 200
    assert points.value == pytest.approx(matrix.value, rel=1e-9)
    w = otsolve.wasserstein(x, x, method="sinkhorn", reg=0.01)
    assert w.n_iter == points.n_iter


# ---------------------------------------------------------------- costs from coordinates
def test_costs_neither_underflow_nor_overflow():
    assert otsolve.cost_matrix([1e-200], [3e-200], p=1)[0, 0] == pytest.approx(2e-200, rel=1e-15)
    assert otsolve.cost_matrix([[1e155, 0.0]], [[3e155, 0.0]], p=1)[0, 0] == pytest.approx(2e155, rel=1e-15)
    assert otsolve.cost_matrix([[3e-200, 0.0]], [[0.0, 4e-200]], p=1)[0, 0] == pytest.approx(5e-200, rel=1e-15)
    assert otsolve.wasserstein([1e-200], [3e-200], p=1).value == pytest.approx(2e-200, rel=1e-15)
    x, y = np.array([[0.0, 0.0], [1e160, 0.0]]), np.array([[0.0, 1e160], [1e160, 1e160]])
    assert otsolve.wasserstein(x, y, p=1).value == pytest.approx(1e160, rel=1e-12)
    assert otsolve.wasserstein(x, y, p=1, lazy=True).value == pytest.approx(1e160, rel=1e-12)


def test_costs_that_overflow_get_a_clear_error():
    x, y = np.array([[0.0], [1e155]]), np.array([[3e155], [1.0]])
    for call in (lambda: otsolve.cost_matrix(x, y), lambda: otsolve.wasserstein(x, y),
                 lambda: otsolve.wasserstein(x, y, lazy=True),
                 lambda: otsolve.sinkhorn_points(x * 10, y * 10, reg=1.0)):
        with pytest.raises(ValueError, match="overflow float64"):
            call()


# ---------------------------------------------------------------- API behaviour
def test_status_compares_with_words_both_ways():
    assert not (Status.OPTIMAL != "optimal") and Status.OPTIMAL != "max_iter"
    assert Status.MAX_ITER != "optimal" and not (Status.MAX_ITER != "max_iter")
    assert Status.OPTIMAL != 1 and not (Status.OPTIMAL != 0)


def test_float32_weights_normalised_separately_are_accepted():
    rng = np.random.default_rng(0)
    a32, b32 = rng.random(500).astype(np.float32), rng.random(400).astype(np.float32)
    a32, b32 = a32 / a32.sum(), b32 / b32.sum()
    C = rng.random((500, 400))
    assert otsolve.exact(C, a32, b32).status == Status.OPTIMAL
    assert otsolve.sinkhorn(C, a32, b32, reg=0.1).status == Status.OPTIMAL
    with pytest.raises(ValueError, match="equal total mass"):  # float64 keeps its tight check
        otsolve.exact(C, a32.astype(float), b32.astype(float) * (1 + 1e-7))


def test_wasserstein_options_are_checked():
    x, y = np.random.default_rng(0).normal(size=(2, 20, 2))
    with pytest.raises(TypeError, match="lazy=True") as err:
        otsolve.wasserstein(x, y, lazy=True, warm_start=(np.zeros(20), np.zeros(20)))
    assert "exact_points" not in str(err.value)
    with pytest.raises(ValueError, match="lazy"):
        otsolve.wasserstein(x, y, method="sinkhorn", reg=0.1, lazy=False)


def test_semidual_refuses_reg_or_costs_beyond_float64_digits():
    C, a, b = random_problem(10)
    for kwargs in (dict(reg=1e11), dict(reg=1e308)):
        with pytest.raises(ValueError, match="reg"):
            otsolve.semidual_sgd(C, a, b, **kwargs)
    with pytest.raises(ValueError, match="overflow"):
        otsolve.semidual_sgd(C * 1e301, a, b)
    with pytest.raises(ValueError, match="reg"):
        otsolve.semidiscrete_sgd(lambda n, rng: rng.random(n), [0.2, 0.7], reg=1e12)


@pytest.mark.parametrize("scale", [1e-300, 1e-100, 1e100, 1e150, 1e300])
def test_extreme_coordinates_give_finite_answers_or_clear_errors(scale):
    """Coordinates 1e-300 .. 1e300, reg from tiny to huge: a finite result or a ValueError."""
    x, y = np.random.default_rng(11).normal(size=(2, 15, 2)) * scale
    for p in (1, 2):
        unit = min(float(np.power(scale, float(p))), 1e308)
        calls = [lambda: otsolve.wasserstein(x, y, p=p), lambda: otsolve.wasserstein(x, y, p=p, lazy=True)]
        for rel in (1e-320, 1e-13, 1e-3, 1.0, 1e300):
            reg = max(rel * unit, 5e-324)
            calls.append(lambda reg=reg: otsolve.sinkhorn_points(x, y, reg=reg, p=p, max_iter=100))
        for call in calls:
            try:
                res = quiet(call)
            except ValueError:
                continue
            assert np.isfinite([res.value, res.value_linear, res.marginal_error]).all(), res
            assert np.isfinite(res.f).all() and np.isfinite(res.g).all()


# ---------------------------------------------------------------- found in review
def test_exact_ignores_absurd_warm_potentials_and_refuses_overflowing_spreads():
    C = np.random.default_rng(0).random((5, 4))
    cold = otsolve.exact(C)
    for big in (1e10, 1e16, 1e20):
        warm = otsolve.exact(C, warm_start=(np.array([big, 0, 0, 0, 0.0]), np.zeros(4)))
        assert warm.status == Status.OPTIMAL and warm.value == pytest.approx(cold.value, rel=1e-12)
    for C in ([[8e307, -8e307], [-8e307, 8e307]], [[1e308, -1e308], [-1e308, 1e308]]):
        with pytest.raises(ValueError, match="spread"):
            otsolve.exact(np.array(C))
        with pytest.raises(ValueError, match="spread"):
            otsolve.exact_batch(np.array([C]))


def test_sinkhorn_optimal_only_when_the_returned_plan_meets_tol():
    rng = np.random.default_rng(2)
    C = rng.random((15, 12))
    a, b = rng.random(15), rng.random(12)
    a, b = a / a.sum(), b / b.sum()
    for tol in (1e-15, 1e-14, 1e-13, 1e-12):
        res = quiet(otsolve.sinkhorn, C, a, b, reg=0.005, tol=tol)
        error = max(np.abs(res.plan.sum(1) - a).sum(), np.abs(res.plan.sum(0) - b).sum())
        assert np.isfinite(res.value)
        if res.success:
            assert res.marginal_error <= tol and error <= 2 * tol


def test_sinkhorn_tol_zero_runs_past_an_exact_fixed_point():
    C = np.random.default_rng(0).random((6, 5))
    for reg_m in (None, 1.0):
        res = quiet(otsolve.sinkhorn, C, np.full(6, 1 / 6), np.full(5, 0.2), reg=0.1, tol=0, max_iter=300,
                    reg_m=reg_m)
        assert res.status == Status.MAX_ITER and res.n_iter == 300 and np.isfinite(res.value)


def test_more_clear_errors():
    with pytest.raises(ValueError, match="overflow|spread"):
        otsolve.semidiscrete_sgd(lambda n, rng: rng.random(n) * 1e160, [0.25e160, 0.75e160], seed=0)
    x, y = np.random.default_rng(0).normal(size=(2, 20, 2))
    with pytest.raises(TypeError, match="multiscale=True") as err:  # max_iter is its one option
        otsolve.wasserstein(x, y, multiscale=True, warm_start=(np.zeros(20), np.zeros(20)))
    assert "exact_multiscale" not in str(err.value)


@pytest.mark.parametrize("t", [1e6, 1e9, -1e9, 1e12])
def test_semidual_large_offsets_keep_the_certificate(t):
    """The review's case: at C + 1e9 the gap lost its digits to the offset and came out -1086."""
    C, a, b = random_problem(12, 8, 6)
    base = otsolve.semidual_sgd(C, a, b, reg=0.01, seed=0)
    res = quiet(otsolve.semidual_sgd, C + t, a, b, reg=0.01, seed=0)
    assert res.status == base.status and res.n_iter == base.n_iter
    resolution = 1e3 * np.spacing(abs(t))  # C + t holds C to an ulp of t
    assert res.value - t == pytest.approx(base.value, abs=resolution)
    assert res.duality_gap == pytest.approx(base.duality_gap, abs=resolution)
    assert res.duality_gap >= -resolution and res.value_linear - t == pytest.approx(base.value_linear, abs=resolution)


@pytest.mark.parametrize("mass", [1e-200, 1e150, 1e300])
def test_entropic_solvers_refuse_masses_whose_products_leave_float64(mass):
    """The review's cases: at mass 1e-200 the KL term vanished (value == value_linear, optimal),
    at 1e300 values were inf or NaN."""
    C, a, b = random_problem(13, 8, 6)
    calls = (lambda: otsolve.sinkhorn(C, mass * a, mass * b, reg=0.1),
             lambda: otsolve.semidual_sgd(C, mass * a, mass * b, reg=0.1, seed=0),
             lambda: otsolve.sinkhorn_points(C[:, :2], C[:6, 2:4], mass * a, mass * b, reg=0.1))
    for call in calls:
        with pytest.raises(ValueError, match="rescale a and b"):
            call()
    assert otsolve.exact(C, mass * a, mass * b).value == pytest.approx(mass * lp_transport(C, a, b)[0], rel=1e-9)


def test_costs_that_underflow_get_a_clear_error_not_a_silent_zero():
    """Review: W2 between points 1e-200 apart returned 0.0, optimal (the squares underflow)."""
    x, y = [[1e-200]], [[3e-200]]
    for call in (lambda: otsolve.wasserstein(x, y, p=2), lambda: otsolve.wasserstein(x, y, p=2, lazy=True),
                 lambda: otsolve.wasserstein(x, y, p=2, multiscale=True), lambda: otsolve.cost_matrix(x, y),
                 lambda: otsolve.sinkhorn_points(x, y, reg=1.0)):
        with pytest.raises(ValueError, match="underflow float64"):
            call()
    assert otsolve.wasserstein(x, y, p=1).value == pytest.approx(2e-200, rel=1e-15)  # p = 1 is representable
    assert otsolve.wasserstein([[1.0], [1.0]], [[1.0]], p=2).value == 0.0            # a true zero stays

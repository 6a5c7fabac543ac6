"""Exact OT against SciPy's HiGHS LP, closed forms and the optimality certificate."""
import warnings

import numpy as np
import pytest
import scipy.optimize
import scipy.sparse
from hypothesis import given, settings, strategies as st

import otsolve
from oracles import lp_transport, wasserstein_1d

VALUE_RTOL = 1e-9     # the agreement with HiGHS
MARGINAL_ATOL = 1e-12  # plan marginals, at unit mass
DUAL_RTOL = 1e-11     # dual feasibility and gap relative to max|C|: rounding of path sums in the tree


def assert_certified(res, C, a, b):
    """The certificate alone proves optimality: feasible plan, feasible duals, zero gap."""
    scale = max(np.abs(C).max(), 1e-300)
    P = res.plan.toarray()
    assert scipy.sparse.issparse(res.plan) and res.plan.nnz <= sum(C.shape) - 1
    assert (P >= 0).all()
    mass = a.sum()
    assert np.abs(P.sum(1) - a).sum() <= MARGINAL_ATOL * mass
    assert np.abs(P.sum(0) - b * mass / b.sum()).sum() <= MARGINAL_ATOL * mass
    assert (res.f[:, None] + res.g[None, :] <= C + DUAL_RTOL * scale).all()
    assert np.isclose(a @ res.f + b * mass / b.sum() @ res.g, res.value, rtol=0, atol=DUAL_RTOL * scale * mass)
    assert abs(res.duality_gap) <= DUAL_RTOL * scale * mass
    assert res.max_dual_violation <= DUAL_RTOL * scale
    slack = C - res.f[:, None] - res.g[None, :]
    assert (np.abs(slack[P > 0]) <= DUAL_RTOL * scale).all()  # complementary slackness
    assert np.isclose(a @ res.f, b * mass / b.sum() @ res.g, atol=DUAL_RTOL * scale * mass)  # normalisation
    assert res.status == "optimal" and res.success


def assert_matches_lp(C, a, b):
    res = otsolve.exact(C, a, b)
    value, _, _, _ = lp_transport(C, a, b)
    # near a zero optimum HiGHS rounds too (-4.4e-16 against an exact 0 at costs of magnitude 3):
    # an absolute term of DUAL_RTOL x max|C| x mass, the scale of the objective
    assert res.value == pytest.approx(value, rel=VALUE_RTOL, abs=DUAL_RTOL * np.abs(C).max() * a.sum())
    assert_certified(res, C, a, b)
    return res


def random_weights(rng, n, zeros=0):
    w = rng.random(n) + 0.01
    w[rng.choice(n, zeros, replace=False)] = 0.0
    return w / w.sum()


@pytest.mark.parametrize("seed", range(8))
def test_random_problems_match_lp(seed):
    rng = np.random.default_rng(seed)
    n, m = rng.integers(2, 40, size=2)
    assert_matches_lp(rng.random((n, m)), random_weights(rng, n), random_weights(rng, m))


@pytest.mark.parametrize("seed", range(6))
def test_tie_heavy_integer_costs_degenerate(seed):
    rng = np.random.default_rng(100 + seed)
    n, m = rng.integers(5, 40, size=2)
    C = rng.integers(0, 3, size=(n, m)).astype(float)
    # uniform weights with n == m or multiples make ties in the north-west corner too
    assert_matches_lp(C, np.full(n, 1.0 / n), np.full(m, 1.0 / m))


def test_integer_weights_and_costs_fully_degenerate():
    C = np.array([[1, 1, 1, 1], [1, 1, 1, 1], [1, 1, 1, 1]], dtype=float)
    assert_matches_lp(C, np.array([2.0, 1.0, 1.0]), np.array([1.0, 1.0, 1.0, 1.0]))


@pytest.mark.parametrize("seed", range(4))
def test_zero_weight_bins(seed):
    rng = np.random.default_rng(200 + seed)
    n, m = 12, 9
    C = rng.random((n, m))
    assert_matches_lp(C, random_weights(rng, n, zeros=3), random_weights(rng, m, zeros=2))


@pytest.mark.parametrize("shape", [(1, 7), (7, 1), (1, 1), (30, 2), (2, 30), (50, 3)])
def test_very_unequal_sizes(shape):
    rng = np.random.default_rng(sum(shape))
    n, m = shape
    assert_matches_lp(rng.random(shape), random_weights(rng, n), random_weights(rng, m))


@pytest.mark.parametrize("scale", [1e-9, 1e9])
def test_scale_invariance(scale):
    rng = np.random.default_rng(7)
    C = rng.random((25, 30))
    a, b = random_weights(rng, 25), random_weights(rng, 30)
    # HiGHS has absolute tolerances (it is off by ~85% on C * 1e-9), so it solves the unscaled
    # problem and the LP's scale equivariance carries its value over.
    res = otsolve.exact(C * scale, a, b)
    assert res.value == pytest.approx(scale * lp_transport(C, a, b)[0], rel=VALUE_RTOL)
    assert_certified(res, C * scale, a, b)


def test_huge_costs_avoided_by_the_optimum():
    # POT's issue 229: 1e32 entries next to O(1) costs; the optimum avoids them entirely.
    rng = np.random.default_rng(3)
    n = 30
    C = rng.random((n, n))
    perm = rng.permutation(n)
    C[rng.random((n, n)) < 0.7] = 1e32
    C[np.arange(n), perm] = rng.random(n)  # a cheap perfect matching always exists
    res = otsolve.exact(C)
    _, P, _, _ = lp_transport(C, np.full(n, 1 / n), np.full(n, 1 / n))
    lp_value = float((P * np.where(P > 0, C, 0)).sum())
    assert lp_value < 1.0
    assert res.value == pytest.approx(lp_value, rel=VALUE_RTOL)
    assert (C[res.plan.toarray() > 0] < 1.0).all()


def test_affine_cost_and_transpose_invariance():
    rng = np.random.default_rng(11)
    C = rng.random((15, 20))
    a, b = random_weights(rng, 15), random_weights(rng, 20)
    base = otsolve.exact(C, a, b).value
    assert otsolve.exact(3.0 * C + 5.0, a, b).value == pytest.approx(3.0 * base + 5.0, rel=1e-12)
    assert otsolve.exact(C.T, b, a).value == pytest.approx(base, rel=1e-12)


@pytest.mark.parametrize("p", [1, 2, 1.5])
def test_one_dimensional_wasserstein_by_sorting(p):
    rng = np.random.default_rng(int(p * 10))
    u, v = rng.normal(size=40), rng.normal(1.0, 2.0, size=35)
    a, b = random_weights(rng, 40), random_weights(rng, 35)
    res = otsolve.wasserstein(u, v, a, b, p=p)
    expected = wasserstein_1d(u, v, a, b, p)
    assert res.value_linear == pytest.approx(expected, rel=1e-10)
    assert res.value == pytest.approx(expected ** (1 / p), rel=1e-10)


def test_uniform_assignment_is_a_permutation():
    rng = np.random.default_rng(5)
    n = 60
    C = rng.random((n, n))
    res = otsolve.exact(C)
    rows, cols = scipy.optimize.linear_sum_assignment(C)
    assert res.value == pytest.approx(C[rows, cols].sum() / n, rel=VALUE_RTOL)
    P = res.plan.toarray() * n
    assert np.allclose(np.sort(P, axis=1)[:, -1], 1.0) and np.allclose(P.sum(0), 1.0)


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 8), m=st.integers(1, 8), seed=st.integers(0, 2**32 - 1),
       integer_costs=st.booleans(), zeros=st.booleans())
def test_property_random_small_problems(n, m, seed, integer_costs, zeros):
    rng = np.random.default_rng(seed)
    C = rng.integers(-3, 4, size=(n, m)).astype(float) if integer_costs else rng.normal(size=(n, m))
    a = rng.integers(0 if zeros else 1, 4, size=n).astype(float)
    b = rng.integers(0 if zeros else 1, 4, size=m).astype(float)
    if a.sum() == 0 or b.sum() == 0:
        a[0] += 1.0
        b[0] += 1.0
    b = b * a.sum() / b.sum()
    assert_matches_lp(C, a, b)


def test_max_iter_is_reported_never_silent():
    rng = np.random.default_rng(0)
    C = rng.random((40, 40))
    with pytest.warns(otsolve.ConvergenceWarning, match="max_iter=2"):
        res = otsolve.exact(C, max_iter=2)
    assert res.status == "max_iter" and not res.success and res.n_iter == 2
    assert res.value >= otsolve.exact(C).value - 1e-15
    assert np.abs(res.plan.toarray().sum(1) - 1 / 40).sum() < MARGINAL_ATOL  # still a feasible plan


def test_warm_start_gives_the_same_optimum():
    rng = np.random.default_rng(9)
    C = rng.random((50, 40))
    cold = otsolve.exact(C)
    warm = otsolve.exact(C + 1e-3 * rng.random(C.shape), warm_start=cold.potentials)
    direct = otsolve.exact(C + 1e-3 * rng.random(C.shape))
    assert warm.value != cold.value
    C2 = C + 1e-3 * np.random.default_rng(10).random(C.shape)
    assert otsolve.exact(C2, warm_start=cold.potentials).value == pytest.approx(otsolve.exact(C2).value,
                                                                                rel=1e-12)
    assert direct.success and warm.success


def test_float32_and_integer_input_are_converted():
    C = np.array([[0, 2], [2, 0]], dtype=np.int32)
    assert otsolve.exact(C).value == 0.0
    rng = np.random.default_rng(1)
    C32 = rng.random((10, 10)).astype(np.float32)
    assert otsolve.exact(C32).value == pytest.approx(otsolve.exact(C32.astype(np.float64)).value, rel=1e-12)


def test_inputs_are_not_modified():
    rng = np.random.default_rng(2)
    C, a, b = rng.random((6, 5)), random_weights(rng, 6, zeros=1), random_weights(rng, 5)
    b2 = b * (1 + 1e-12)
    copies = [C.copy(), a.copy(), b2.copy()]
    otsolve.exact(C, a, b2)
    for before, after in zip(copies, [C, a, b2]):
        assert np.array_equal(before, after)


C_OK = np.ones((3, 4))


@pytest.mark.parametrize("C, a, b, error, match", [
    (np.array([[0.0, np.nan], [1.0, 0.0]]), None, None, ValueError, r"C contains nan at \(0, 1\)"),
    (np.array([[0.0, np.inf], [1.0, 0.0]]), None, None, ValueError, "C contains inf"),
    (C_OK, [0.5, np.nan, 0.5], None, ValueError, "a contains nan"),
    (C_OK, None, [0.25, 0.25, np.inf, 0.25], ValueError, "b contains inf"),
    (C_OK, [0.5, -0.1, 0.6], None, ValueError, "a has a negative weight"),
    (C_OK, [0, 0, 0], None, ValueError, "a is all zeros"),
    (C_OK, [0.5, 0.5], None, ValueError, "a has 2 entries but must have 3"),
    (C_OK, None, [0.5, 0.5], ValueError, "b has 2 entries but must have 4"),
    (C_OK, [1, 1, 1], None, ValueError, r"equal total mass.*sum\(a\)=3.0"),
    (np.ones(4), None, None, ValueError, "C must be a 2-D"),
    (np.ones((2, 2, 2)), None, None, ValueError, "C must be a 2-D"),
    (np.ones((0, 3)), None, None, ValueError, "C is empty"),
    (np.ones((2, 2)) * 1j, None, None, TypeError, "C has complex dtype"),
    (np.array([["a", "b"]]), None, None, TypeError, "C has dtype"),
    (np.array([[1, None]], dtype=object), None, None, TypeError, "C has dtype object"),
    (C_OK, np.ones((3, 1)) / 3, None, ValueError, "a must be 1-D"),
    (C_OK, "abc", None, TypeError, "a has dtype"),
])
def test_bad_input_is_rejected_clearly(C, a, b, error, match):
    with pytest.raises(error, match=match):
        otsolve.exact(C, a, b)


@pytest.mark.parametrize("kwargs, error, match", [
    ({"max_iter": -1}, ValueError, "max_iter must be >= 0"),
    ({"max_iter": 2.5}, TypeError, "max_iter must be an integer"),
    ({"warm_start": (np.zeros(3),)}, TypeError, "warm_start must be a pair"),
    ({"warm_start": (np.zeros(2), np.zeros(4))}, ValueError, "warm_start potentials have lengths"),
])
def test_bad_options_are_rejected(kwargs, error, match):
    with pytest.raises(error, match=match):
        otsolve.exact(C_OK, **kwargs)


def test_masses_within_tolerance_are_rescaled():
    res = otsolve.exact(C_OK, None, np.full(4, 0.25 * (1 + 1e-11)))
    assert res.success and res.marginal_error < MARGINAL_ATOL


def test_cost_matrix_and_wasserstein_validation():
    x = np.array([[0.0, 0.0], [1.0, 0.0]])
    assert np.allclose(otsolve.cost_matrix(x, x), [[0, 1], [1, 0]])
    assert np.allclose(otsolve.cost_matrix(x, x + [0, 2], p=1, metric="cityblock"), [[2, 3], [3, 2]])
    with pytest.raises(ValueError, match="same dimension"):
        otsolve.cost_matrix(x, np.ones((2, 3)))
    with pytest.raises(ValueError, match="unknown metric"):
        otsolve.cost_matrix(x, x, metric="cosine")
    with pytest.raises(ValueError, match="p must be > 0"):
        otsolve.wasserstein(x, x, p=0)
    with pytest.raises(ValueError, match="y is empty"):
        otsolve.wasserstein(x, np.ones((0, 2)))
    with pytest.raises(ValueError, match="unknown method"):
        otsolve.wasserstein(x, x, method="magic")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert otsolve.wasserstein(x, x).value == 0.0


def test_gaussian_monge_map_is_optimal_and_matches_bures():
    # y_i = T(x_i) with T the gradient of a convex function (the Gaussian Monge map), so the
    # pairing x_i -> y_i is optimal: the empirical cost is known exactly, and tends to Bures.
    from oracles import gaussian_w2_squared
    rng = np.random.default_rng(4)
    m1, m2 = np.zeros(2), np.array([2.0, 1.0])
    S1, S2 = np.eye(2), np.diag([2.25, 0.25])
    x = rng.multivariate_normal(m1, S1, size=1500)
    y = x @ np.diag([1.5, 0.5]) + m2
    res = otsolve.wasserstein(x, y)
    assert res.value_linear == pytest.approx(np.mean(np.sum((x - y) ** 2, axis=1)), rel=VALUE_RTOL)
    # sampling error of a mean of 1500 quadratic terms: well under 5 %
    assert res.value ** 2 == pytest.approx(gaussian_w2_squared(m1, S1, m2, S2), rel=0.05)


@pytest.mark.parametrize("metric, p", [("euclidean", 2), ("euclidean", 1), ("cityblock", 1), ("sqeuclidean", 1)])
def test_lazy_point_clouds_agree_with_dense(metric, p):
    rng = np.random.default_rng(21)
    x, y = rng.normal(size=(120, 3)), rng.normal(size=(90, 3)) + 0.5
    a, b = random_weights(rng, 120, zeros=5), random_weights(rng, 90, zeros=3)
    dense = otsolve.wasserstein(x, y, a, b, p=p, metric=metric, lazy=False)
    lazy = otsolve.wasserstein(x, y, a, b, p=p, metric=metric, lazy=True)
    assert lazy.value == pytest.approx(dense.value, rel=1e-12)
    C = otsolve.cost_matrix(x, y, p=p, metric=metric)
    assert lazy.value_linear == pytest.approx(lp_transport(C, a, b)[0], rel=VALUE_RTOL)
    assert_certified(dataclasses_replace_value(lazy), C, a, b)


def dataclasses_replace_value(res):
    """wasserstein reports W_p as value; the certificate is about the cost value_linear."""
    import dataclasses
    return dataclasses.replace(res, value=res.value_linear)


def test_batch_matches_one_by_one():
    rng = np.random.default_rng(31)
    Cs = rng.random((12, 9, 7))
    A = np.stack([random_weights(rng, 9, zeros=int(k == 3)) for k in range(12)])  # one with a zero bin
    b = random_weights(rng, 7)
    results = otsolve.exact_batch(Cs, A, b)
    assert len(results) == 12
    for C, a, res in zip(Cs, A, results):
        assert res.value == pytest.approx(lp_transport(C, a, b)[0], rel=VALUE_RTOL)
        assert_certified(res, C, a, b)


def test_batch_bad_input():
    with pytest.raises(ValueError, match="Cs must be a non-empty"):
        otsolve.exact_batch(np.ones((3, 3)))
    with pytest.raises(ValueError, match="a has 2 rows but there are 3 problems"):
        otsolve.exact_batch(np.ones((3, 2, 2)), np.ones((2, 2)) / 2)
    with pytest.raises(ValueError, match=r"Cs contains nan at \(0, 0, 0\)"):
        otsolve.exact_batch(np.full((2, 2, 2), np.nan))
    with pytest.raises(ValueError, match=r"a\[1\] has a negative weight"):
        otsolve.exact_batch(np.ones((2, 2, 2)), [[0.5, 0.5], [1.5, -0.5]])


def test_warm_start_from_sinkhorn_like_potentials_gives_the_same_optimum():
    rng = np.random.default_rng(41)
    x, y = rng.normal(size=(200, 2)), rng.normal(size=(200, 2))
    C = otsolve.cost_matrix(x, y)
    cold = otsolve.exact(C)
    noisy = (cold.f + 0.05 * rng.normal(size=200), cold.g + 0.05 * rng.normal(size=200))
    warm = otsolve.exact(C, warm_start=noisy)
    assert warm.value == pytest.approx(cold.value, rel=1e-12)
    assert_certified(warm, C, np.full(200, 1 / 200), np.full(200, 1 / 200))


def test_warm_start_from_optimal_potentials_saves_pivots():
    rng = np.random.default_rng(41)
    x, y = rng.normal(size=(200, 2)), rng.normal(size=(200, 2))
    C = otsolve.cost_matrix(x, y)
    cold = otsolve.exact(C, max_iter=10**6)  # a pivot budget: the simplex (not the assignment path)
    warm = otsolve.exact(C, warm_start=cold.potentials)
    assert warm.value == pytest.approx(cold.value, rel=1e-12)
    assert warm.n_iter < 0.75 * cold.n_iter  # measured: 1589 against 2792
    assert_certified(warm, C, np.full(200, 1 / 200), np.full(200, 1 / 200))


@pytest.mark.parametrize("seed", range(3))
def test_warm_start_with_zero_weights_and_wild_potentials(seed):
    rng = np.random.default_rng(300 + seed)
    C = rng.random((15, 12))
    a, b = random_weights(rng, 15, zeros=3), random_weights(rng, 12, zeros=2)
    wild = (rng.normal(scale=100.0, size=15), rng.normal(scale=100.0, size=12))
    res = otsolve.exact(C, a, b, warm_start=wild)
    assert res.value == pytest.approx(lp_transport(C, a, b)[0], rel=VALUE_RTOL)
    assert_certified(res, C, a, b)

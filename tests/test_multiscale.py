"""The multiscale exact solver and wasserstein_grid against the dense network simplex, HiGHS and
closed forms; the certificate is checked over all pairs with a dense cost matrix."""
import numpy as np
import pytest
import scipy.sparse
import scipy.stats

import otsolve
from otsolve.lp import exact_multiscale
from otsolve.lp.grid import solve_grid
from otsolve.lp.multiscale import solve_multiscale
from oracles import lp_transport, wasserstein_1d

VALUE_RTOL = 1e-9      # the agreement with the dense solve and HiGHS
MARGINAL_ATOL = 1e-12  # plan marginals, at unit mass
DUAL_RTOL = 1e-11      # dual feasibility and gap relative to max|C| (CERTIFICATE_RTOL of the solver)


def assert_certified(res, C, a, b):
    """Feasible plan, dual feasibility over ALL pairs, zero gap, complementary slackness."""
    scale = max(np.abs(C).max(), 1e-300)
    P = res.plan.toarray()
    assert scipy.sparse.issparse(res.plan) and res.plan.nnz <= sum(C.shape) - 1
    assert (P >= 0).all()
    assert np.abs(P.sum(1) - a).sum() <= MARGINAL_ATOL
    assert np.abs(P.sum(0) - b).sum() <= MARGINAL_ATOL
    violation = (res.f[:, None] + res.g[None, :] - C).max()
    assert violation <= DUAL_RTOL * scale
    assert res.max_dual_violation == pytest.approx(max(violation, 0.0), abs=1e-15 * scale)
    assert abs(res.duality_gap) <= DUAL_RTOL * scale
    assert abs(a @ res.f + b @ res.g - (P * C).sum()) <= DUAL_RTOL * scale
    slack = C - res.f[:, None] - res.g[None, :]
    assert (np.abs(slack[P > 0]) <= DUAL_RTOL * scale).all()
    assert res.status == "optimal" and res.success


def check_against_dense(x, y, a=None, b=None, p=2, metric="euclidean", oracle="dense"):
    n, m = len(x), len(y)
    a = np.full(n, 1 / n) if a is None else a
    b = np.full(m, 1 / m) if b is None else b
    C = otsolve.cost_matrix(x, y, p=p, metric=metric)
    res, stats = solve_multiscale(x, y, a, b, p=p, metric=metric)
    expected = lp_transport(C, a, b)[0] if oracle == "highs" else otsolve.exact(C, a, b).value
    assert res.value == pytest.approx(expected, rel=VALUE_RTOL, abs=1e-300)
    assert_certified(res, C, a, b)
    return res, stats


def weights(rng, n, zeros=0):
    w = rng.random(n) + 0.05
    w[rng.choice(n, zeros, replace=False)] = 0.0
    return w / w.sum()


@pytest.mark.parametrize("p", [1, 2])
def test_gaussian_clouds_match_dense_over_several_levels(p):
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(1100, 2)), rng.normal(size=(900, 2)) * [1.5, 0.5] + [2.0, 1.0]
    _, stats = check_against_dense(x, y, p=p)
    assert len(stats.sizes) == 3 and stats.arcs[-1] < 0.1 * 1100 * 900  # it ran sparse, coarse to fine


@pytest.mark.parametrize("p", [1, 2])
def test_duplicates_and_zero_weights_match_highs(p):
    rng = np.random.default_rng(1)
    x = np.round(rng.random((300, 2)) * 4) / 4  # 25 distinct points, many duplicates
    y = np.round(rng.random((280, 2)) * 4) / 4
    check_against_dense(x, y, weights(rng, 300, zeros=20), weights(rng, 280, zeros=15), p=p, oracle="highs")


def test_far_apart_clusters_non_uniform_weights():
    rng = np.random.default_rng(2)
    centres = np.array([[0.0, 0.0], [1000.0, 0.0], [0.0, 500.0]])
    x = centres[rng.integers(0, 3, 700)] + rng.normal(size=(700, 2))
    y = centres[rng.integers(0, 3, 600)] + rng.normal(size=(600, 2)) * 2
    check_against_dense(x, y, weights(rng, 700, zeros=30), weights(rng, 600))


def test_one_dimensional_matches_sorting():
    rng = np.random.default_rng(3)
    u, v = rng.normal(size=700), rng.exponential(size=500)
    a, b = weights(rng, 700, zeros=10), weights(rng, 500)
    res, _ = check_against_dense(u[:, None], v[:, None], a, b, p=2)
    assert res.value == pytest.approx(wasserstein_1d(u, v, a, b, 2), rel=VALUE_RTOL)


@pytest.mark.parametrize("metric,p", [("euclidean", 1), ("sqeuclidean", 1), ("cityblock", 1), ("euclidean", 1.5)])
def test_three_dimensional_metrics_match_dense(metric, p):
    rng = np.random.default_rng(4)
    x, y = rng.random((600, 3)), rng.random((500, 3)) + [0.3, 0.0, 0.0]
    check_against_dense(x, y, p=p, metric=metric)


def test_very_unequal_sizes_and_tiny_problems():
    rng = np.random.default_rng(5)
    check_against_dense(rng.normal(size=(700, 2)), rng.normal(size=(30, 2)))
    check_against_dense(rng.normal(size=(1, 2)), rng.normal(size=(400, 2)))
    check_against_dense(rng.normal(size=(1, 2)), rng.normal(size=(1, 2)))


def test_identical_points_give_zero():
    x = np.ones((500, 2))
    res = exact_multiscale(x, x)
    assert res.value == 0.0 and res.success


def test_wasserstein_dispatch_and_options():
    rng = np.random.default_rng(6)
    x, y = rng.normal(size=(400, 2)), rng.normal(size=(300, 2)) + 1
    multi = otsolve.wasserstein(x, y, multiscale=True)
    plain = otsolve.wasserstein(x, y, multiscale=False)
    assert multi.value == pytest.approx(plain.value, rel=VALUE_RTOL) and multi.success
    assert multi.value_linear == pytest.approx(plain.value ** 2, rel=VALUE_RTOL)
    with pytest.raises(TypeError, match="multiscale"):
        otsolve.wasserstein(x, y, multiscale="yes")
    with pytest.raises(TypeError, match="takes only max_iter; got warm_start"):
        otsolve.wasserstein(x, y, multiscale=True, warm_start=(np.zeros(400), np.zeros(300)))
    with pytest.warns(otsolve.ConvergenceWarning, match="max_iter=3"):
        assert otsolve.wasserstein(x, y, multiscale=True, max_iter=3).status == "max_iter"


def test_inputs_are_not_modified():
    rng = np.random.default_rng(7)
    x, y, a = rng.normal(size=(300, 2)), rng.normal(size=(300, 2)), weights(rng, 300, zeros=5)
    copies = x.copy(), y.copy(), a.copy()
    exact_multiscale(x, y, a)
    assert all(np.array_equal(u, v) for u, v in zip((x, y, a), copies))


def dense_grid(A, B, p, spacing=1.0):
    """The same problem through the dense solver: pixel centres, normalised masses."""
    spacing = np.broadcast_to(spacing, A.ndim)
    grids = np.meshgrid(*[np.arange(s) * h for s, h in zip(A.shape, spacing)], indexing="ij")
    z = np.stack(grids, axis=-1).reshape(-1, A.ndim)
    C = otsolve.cost_matrix(z, z, p=p)
    return otsolve.exact(C, A.ravel() / A.sum(), B.ravel() / B.sum()).value, C


@pytest.mark.parametrize("shape,p,spacing", [((24, 24), 2, 0.5), ((20, 30), 1, 0.5), ((8, 8, 8), 2, 0.5),
                                             ((40, 37), 2, (0.3, 1.7)), ((9, 7, 5), 1.5, (1.0, 0.5, 2.0))])
def test_grid_matches_dense(shape, p, spacing):
    rng = np.random.default_rng(8)
    A, B = rng.random(shape), rng.random(shape) ** 4
    A[rng.random(shape) < 0.2] = 0.0  # empty pixels
    res, stats = solve_grid(A, B, p=p, spacing=spacing)
    assert len(stats.sizes) == 1 + (np.prod(shape) > 256) + (np.prod(shape) > 1024)  # pooled levels
    res = otsolve.wasserstein_grid(A, B, p=p, spacing=spacing, multiscale=True)
    value, C = dense_grid(A, B, p, spacing=spacing)
    assert res.value_linear == pytest.approx(value, rel=VALUE_RTOL)
    assert res.value == pytest.approx(value ** (1 / p), rel=VALUE_RTOL)
    assert_certified(res, C, A.ravel() / A.sum(), B.ravel() / B.sum())


@pytest.mark.parametrize("p", [1, 2])
def test_one_dimensional_grid_matches_quantile_formula(p):
    rng = np.random.default_rng(9)
    A, B = rng.random(600), rng.random(600) * np.linspace(0, 1, 600)
    A[:50] = 0.0
    res = otsolve.wasserstein_grid(A, B, p=p, multiscale=True)
    # closed form on the line: integrate |F^-1(t) - G^-1(t)|^p over the merged quantile levels
    cu, cv = np.cumsum(A / A.sum()), np.cumsum(B / B.sum())
    levels = np.unique(np.concatenate([[0.0], cu, cv]).clip(0, 1))
    mids = (levels[1:] + levels[:-1]) / 2
    qu = np.minimum(np.searchsorted(cu, mids), 599)
    qv = np.minimum(np.searchsorted(cv, mids), 599)
    expected = np.sum(np.diff(levels) * np.abs(qu - qv).astype(float) ** p)
    assert res.value_linear == pytest.approx(expected, rel=VALUE_RTOL)


def test_grid_matches_highs_with_sparse_images():
    rng = np.random.default_rng(11)
    A, B = np.zeros((20, 20)), np.zeros((20, 20))
    A[3:9, 2:7], B[12:18, 10:19] = rng.random((6, 5)), rng.random((6, 9))  # shapes far apart
    res = otsolve.wasserstein_grid(A, B, multiscale=True)
    value, C = dense_grid(A, B, 2)
    a, b = A.ravel() / A.sum(), B.ravel() / B.sum()
    assert res.value_linear == pytest.approx(lp_transport(C, a, b)[0], rel=VALUE_RTOL)
    assert_certified(res, C, a, b)
    plain = otsolve.wasserstein_grid(A, B, multiscale=False, max_iter=10**6)  # the pixels as a point cloud
    assert plain.value == pytest.approx(res.value, rel=VALUE_RTOL) and plain.success


def test_grid_neighbourhood_by_index_offsets(monkeypatch):
    from otsolve.lp import _hierarchy
    rng = np.random.default_rng(12)
    A, B = rng.random((34, 34)), rng.random((34, 34))
    plain, plain_stats = solve_grid(A, B)
    monkeypatch.setattr(_hierarchy, "GRID_NEIGHBOUR_RADIUS", 1)
    wide, wide_stats = solve_grid(A, B)
    assert wide.value == pytest.approx(plain.value, rel=VALUE_RTOL) and wide.success
    assert wide_stats.arcs[1] > plain_stats.arcs[1]  # the finer levels start from more arcs


def test_one_dimensional_grid_matches_scipy_w1():
    rng = np.random.default_rng(13)
    A, B = rng.random(700) ** 3, rng.random(700)
    res = otsolve.wasserstein_grid(A, B, p=1, spacing=0.25, multiscale=True)
    z = np.arange(700) * 0.25
    assert res.value == pytest.approx(scipy.stats.wasserstein_distance(z, z, A, B), rel=VALUE_RTOL)


def assert_feasible_stop(res, a, b, budget):
    P = res.plan.toarray()
    assert res.status == "max_iter" and not res.success and "ran out at level" in res.message
    assert res.n_iter <= budget and np.isfinite(res.value) and (P >= 0).all()
    assert np.abs(P.sum(1) - a).sum() <= MARGINAL_ATOL and np.abs(P.sum(0) - b).sum() <= MARGINAL_ATOL
    assert np.isfinite(res.f).all() and np.isfinite(res.g).all()


@pytest.mark.parametrize("grid", [False, True])
def test_pivot_budget(grid):
    rng = np.random.default_rng(14)
    if grid:
        A, B = rng.random((40, 40)), rng.random((40, 40))
        A[:5] = 0.0
        a, b = A.ravel() / A.sum(), B.ravel() / B.sum()
        solve = lambda budget: solve_grid(A, B, max_iter=budget)
    else:
        x, y = rng.normal(size=(1500, 2)), rng.normal(size=(1400, 2))
        a, b = weights(rng, 1500, zeros=10), weights(rng, 1400)
        solve = lambda budget: solve_multiscale(x, y, a, b, max_iter=budget)
    full, stats = solve(None)
    assert full.success and len(stats.sizes) == 3
    exact_value = full.value
    for budget, level in [(0, 2), (sum(stats.pivots[:2]) + 5, 0), (sum(stats.pivots) - 1, 0)]:
        with pytest.warns(otsolve.ConvergenceWarning, match=f"max_iter={budget} ran out at level {level}"):
            res, _ = solve(budget)
        assert_feasible_stop(res, a, b, budget)
        assert f"ran out at level {level} of 3" in res.message
        assert res.value >= exact_value * (1 - VALUE_RTOL)
    with pytest.warns(otsolve.ConvergenceWarning, match="north-west corner"):
        solve(0)
    assert "last feasible tree" in res.message  # the budget ran out after the first pricing round
    exact, _ = solve(sum(stats.pivots))  # a budget of exactly the pivots needed
    assert exact.success and exact.value == full.value
    with pytest.raises(ValueError, match="max_iter must be a non-negative integer"):
        solve(-1)


@pytest.mark.parametrize("A,B,error,match", [
    (np.ones((3, 4)), np.ones((4, 3)), ValueError, "same grid shape"),
    (-np.ones((3, 3)), np.ones((3, 3)), ValueError, "A has a negative mass"),
    (np.ones((3, 3)), np.zeros((3, 3)), ValueError, "B is all zeros"),
    (np.ones((3, 3)), np.full((3, 3), np.nan), ValueError, "B contains nan"),
    (np.full((3, 3), np.inf), np.ones((3, 3)), ValueError, "A contains inf"),
    (np.ones((3, 3)), np.ones(9), ValueError, "same grid shape"),
    (np.float64(1.0), np.float64(1.0), ValueError, "A must be a non-empty 1-D, 2-D or 3-D"),
    (np.ones((2, 2, 2, 2)), np.ones((2, 2, 2, 2)), ValueError, "A must be a non-empty 1-D, 2-D or 3-D"),
    (np.ones(0), np.ones(0), ValueError, "A must be a non-empty"),
    (np.array(["a", "b"]), np.ones(2), TypeError, "A has dtype"),
])
def test_grid_bad_input(A, B, error, match):
    with pytest.raises(error, match=match):
        otsolve.wasserstein_grid(A, B)


def test_grid_bad_options():
    A = np.ones((3, 3))
    with pytest.raises(ValueError, match="spacing must be > 0"):
        otsolve.wasserstein_grid(A, A, spacing=0.0)
    with pytest.raises(ValueError, match="spacing has 1 entries but the grids have 2 axes"):
        otsolve.wasserstein_grid(A, A, spacing=[1.0])
    with pytest.raises(TypeError, match="spacing must be"):
        otsolve.wasserstein_grid(A, A, spacing="wide")
    with pytest.raises(ValueError, match="p must be > 0"):
        otsolve.wasserstein_grid(A, A, p=-1)
    with pytest.raises(ValueError, match="spacing must be finite"):
        otsolve.wasserstein_grid(A, A, spacing=(1.0, np.nan))
    with pytest.raises(ValueError, match="spacing must be > 0"):
        otsolve.wasserstein_grid(A, A, spacing=(1.0, -2.0))
    with pytest.raises(TypeError, match="spacing must be"):
        otsolve.wasserstein_grid(A, A, spacing=True)
    with pytest.raises(ValueError, match="overflow float64"):
        otsolve.wasserstein_grid(A, A, spacing=1e300, multiscale=True)
    with pytest.raises(TypeError, match="multiscale must be None, True or False"):
        otsolve.wasserstein_grid(A, A, multiscale="yes")
    with pytest.raises(ValueError, match="max_iter must be a non-negative integer"):
        otsolve.wasserstein_grid(A, A, multiscale=True, max_iter=2.5)


def test_bad_clouds_rejected():
    x = np.zeros((3, 2))
    with pytest.raises(ValueError, match="b has 2 entries"):
        exact_multiscale(x, x, b=[0.5, 0.5])
    with pytest.raises(ValueError, match="a has a negative weight"):
        exact_multiscale(x, x, a=[1.0, -1.0, 1.0])
    with pytest.raises(ValueError, match="same dimension"):
        exact_multiscale(x, np.zeros((3, 3)))
    with pytest.raises(ValueError, match="overflow float64; rescale x and y"):
        exact_multiscale(x, np.full((3, 2), 1e200))


def test_wasserstein_chooses_multiscale_above_the_threshold(monkeypatch):
    import sys
    module = sys.modules["otsolve.wasserstein"]
    calls = []
    real = module.exact_multiscale
    monkeypatch.setattr(module, "exact_multiscale", lambda *args, **kw: calls.append(1) or real(*args, **kw))
    monkeypatch.setattr(module, "MULTISCALE_MIN_PAIRS", 100)
    x = np.random.default_rng(10).normal(size=(20, 2))
    otsolve.wasserstein(x, x + 1)
    assert len(calls) == 1
    otsolve.wasserstein(x, x + 1, lazy=False)        # an explicit dense solve stays dense
    otsolve.wasserstein(x, x + 1, max_iter=10**6)    # so does one with options of the plain solver
    otsolve.wasserstein(x[:5], x[:5] + 1)            # and one below the threshold
    assert len(calls) == 1


@pytest.mark.parametrize("shape,spacing", [((50,), (0.3,)), ((12, 17), (1.0, 0.25)), ((5, 6, 7), (2.0, 0.5, 1.0))])
def test_grid_c_transform_by_axes_equals_all_pairs(shape, spacing):
    """The certificate's separable c-transform on a grid (one pass per axis) is the minimum over
    all pairs of the dense squared-Euclidean matrix, zero-mass columns left out."""
    from otsolve._costs import SQEUCLIDEAN
    from otsolve.lp.multiscale import _c_transform
    rng = np.random.default_rng(21)
    z = np.stack(np.meshgrid(*[np.arange(s) * h for s, h in zip(shape, spacing)], indexing="ij"),
                 axis=-1).reshape(-1, len(shape))
    lengths = [(np.arange(s) * h) ** 2 for s, h in zip(shape, spacing)]
    g = rng.normal(scale=5.0, size=len(z))
    alive = rng.random(len(z)) < 0.6
    C = ((z[:, None, :] - z[None, :, :]) ** 2).sum(-1)
    expected = np.where(alive[None, :], C - g[None, :], np.inf).min(axis=1)
    which = rng.choice(len(z), 9, replace=False)
    for rows in (None, which):
        got = _c_transform(g, alive, z, z, SQEUCLIDEAN, 2.0, (shape, lengths), rows)
        want = expected if rows is None else expected[rows]
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-12 * np.abs(C).max())

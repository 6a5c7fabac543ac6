"""Uniform weights on n = m points: the assignment path of the exact solver, against SciPy's
linear_sum_assignment, HiGHS and the certificate."""
import numpy as np
import pytest
import scipy.optimize

import otsolve
from oracles import lp_transport
from otsolve.lp import _assignment_kernels, network_simplex
from test_exact import VALUE_RTOL, assert_certified


def _problem(kind, n, rng):
    if kind == "random":
        return rng.random((n, n))
    if kind == "integer ties":
        return rng.integers(0, 3, (n, n)).astype(float)
    if kind == "duplicate points":  # identical rows and identical columns
        x, y = rng.normal(size=(n, 2)), rng.normal(size=(n, 2)) + 1.0
        x[n // 2:] = x[:n - n // 2]
        y[: n // 3] = y[0]
        return otsolve.cost_matrix(x, y)
    if kind == "offset":  # differences of 1 on top of 1e9: the reduction keeps their digits
        return rng.random((n, n)) + 1e9
    if kind == "all equal":
        return np.full((n, n), 3.0)
    raise AssertionError(kind)


def _assignment_value(C):
    rows, cols = scipy.optimize.linear_sum_assignment(C)
    return C[rows, cols].mean()


KINDS = ["random", "integer ties", "duplicate points", "offset", "all equal"]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("n", [1, 2, 7, 40])
def test_matches_linear_sum_assignment_and_lp(kind, n):
    rng = np.random.default_rng(n)
    C = _problem(kind, n, rng)
    a = np.full(n, 1.0 / n)
    reduced = C.copy()
    network_simplex.reduce_costs(reduced)
    assert network_simplex._assignment(reduced, a, a) is not None  # the path is taken, not the fallback
    res = otsolve.exact(C)
    assert res.value == pytest.approx(_assignment_value(C), rel=VALUE_RTOL)
    assert res.value == pytest.approx(lp_transport(C, a, a)[0], rel=VALUE_RTOL)
    assert_certified(res, C, a, a)
    P = res.plan.toarray()
    assert res.plan.nnz == n and (P[P > 0] == 1.0 / n).all()  # a permutation (Birkhoff vertex)


def test_weights_of_any_equal_value_and_mass():
    rng = np.random.default_rng(5)
    C = rng.random((30, 30))
    a = np.full(30, 2.0)  # mass 60: the plan carries 2 per cell
    res = otsolve.exact(C, a, a)
    assert res.value == pytest.approx(60 * _assignment_value(C), rel=VALUE_RTOL)
    assert_certified(res, C, a, a)


@pytest.mark.parametrize("seed", range(4))
def test_geometric_costs_of_the_pairwise_benchmark(seed):
    # two 2-D clouds as in benchmarks/bench_pairwise.py: the auction and the augmentations both work
    rng = np.random.default_rng(seed)
    x, y = rng.normal(size=(150, 2)), rng.normal(size=(150, 2)) * [1.5, 0.5] + [2.0, 1.0]
    C = otsolve.cost_matrix(x, y)
    res = otsolve.exact(C)
    a = np.full(150, 1 / 150)
    reduced = C.copy()
    network_simplex.reduce_costs(reduced)
    assert network_simplex._assignment(reduced, a, a) is not None
    assert res.value == pytest.approx(_assignment_value(C), rel=VALUE_RTOL)
    assert res.value == pytest.approx(network_simplex._solve(C.copy(), C.shape, a, a,
                                                             network_simplex._identity_orders, -1).value,
                                      rel=VALUE_RTOL)
    assert_certified(res, C, a, a)


def test_huge_costs_fall_back_to_the_simplex():
    # 1e32 next to O(1): the auction's prices jump by 1e32 and lose the small costs' digits; the
    # dual range check refuses its result, and the simplex gives the LP's value
    rng = np.random.default_rng(3)
    n = 30
    C = rng.random((n, n))
    C[rng.random((n, n)) < 0.7] = 1e32
    C[np.arange(n), rng.permutation(n)] = rng.random(n)
    a = np.full(n, 1.0 / n)
    reduced = C.copy()
    network_simplex.reduce_costs(reduced)
    assert network_simplex._assignment(reduced, a, a) is None
    assert otsolve.exact(C).value == pytest.approx(_assignment_value(C), rel=VALUE_RTOL)


def test_max_iter_keeps_the_simplex_and_its_status():
    C = np.random.default_rng(8).random((20, 20))
    with pytest.warns(otsolve.ConvergenceWarning):
        res = otsolve.exact(C, max_iter=2)
    assert res.status == otsolve.Status.MAX_ITER and res.n_iter == 2


def test_batch_equals_the_loop():
    rng = np.random.default_rng(9)
    Cs = np.stack([_problem(kind, 12, rng) for kind in KINDS])
    batch = otsolve.exact_batch(Cs)
    for C, res in zip(Cs, batch):
        assert res.value == pytest.approx(_assignment_value(C), rel=VALUE_RTOL)
        assert res.value == otsolve.exact(C).value
        assert_certified(res, C, np.full(12, 1 / 12), np.full(12, 1 / 12))


def test_non_uniform_or_rectangular_problems_are_not_assignments():
    a = np.full(4, 0.25)
    assert network_simplex.is_assignment(a, a)
    assert not network_simplex.is_assignment(a, np.full(5, 0.2))
    assert not network_simplex.is_assignment(a, np.array([0.25, 0.25, 0.3, 0.2]))
    big = np.full(_assignment_kernels.MAX_SIZE + 1, 1.0)  # the simplex is faster there
    assert not network_simplex.is_assignment(big, big)


def test_pairwise_on_equal_uniform_clouds_equals_the_loop():
    # the pairwise kernel takes the assignment path too; duplicate points make ties
    rng = np.random.default_rng(11)
    clouds = [rng.normal(size=(20, 2)) + k % 3 for k in range(5)]
    clouds[2][10:] = clouds[2][:10]
    res = otsolve.pairwise(clouds)
    for i in range(5):
        for j in range(i + 1, 5):
            loop = otsolve.wasserstein(clouds[i], clouds[j]).value
            assert res.distances[i, j] == pytest.approx(loop, rel=1e-12)
            C = otsolve.cost_matrix(clouds[i], clouds[j])
            assert res.distances[i, j] ** 2 == pytest.approx(_assignment_value(C), rel=VALUE_RTOL)
    assert (res.status == otsolve.Status.OPTIMAL).all() and res.success


@pytest.mark.parametrize("seed", range(3))
def test_vectorised_row_scans_match_numpy(seed):
    """The auction's scan (int64 keys of non-negative differences, the column in the low bits)
    and the exact least reduced cost (any sign, -0 included) against NumPy on rows with ties."""
    rng = np.random.default_rng(seed)
    n = 37
    C = rng.integers(0, 5, (n, n)).astype(float)  # exact ties
    C[0] = -0.0
    v_nonpositive = -rng.integers(0, 3, n).astype(float)
    v_any = rng.normal(size=n)
    v_any[:3] = -0.0
    h = np.empty(n)
    for i in range(n):
        diff = C[i] - v_nonpositive
        low, arg, sub = _assignment_kernels._two_smallest_nonnegative(C, i, v_nonpositive, h, h.view(np.int64))
        assert (low, arg, sub) == (diff.min(), np.argmin(diff), np.sort(diff)[1])
        assert _assignment_kernels._least(C, i, v_any, h, h.view(np.int64)) == (C[i] - v_any).min()
    C = rng.random((n, n)) * 10.0 ** rng.integers(-3, 4, (n, 1))  # rows of any scale: values near the low bits
    for i in range(n):
        low, arg, sub = _assignment_kernels._two_smallest_nonnegative(C, i, v_nonpositive, h, h.view(np.int64))
        diff = C[i] - v_nonpositive
        assert low == diff[arg] and np.isclose(low, diff.min(), rtol=1e-12, atol=0)
        assert np.isclose(sub, np.sort(diff)[1], rtol=1e-12, atol=0)

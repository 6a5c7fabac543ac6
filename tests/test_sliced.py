"""1-D, sliced and max-sliced Wasserstein distances against SciPy, the LP and sorting oracles."""
import numpy as np
import pytest
import scipy.stats
from hypothesis import given, settings, strategies as st

import otsolve
from otsolve.sliced.sliced import draw_directions
from oracles import lp_transport, wasserstein_1d as sorted_oracle

LP_RTOL = 1e-9      # HiGHS' primal feasibility tolerance is 1e-7 absolute on O(1) masses; values agree far better
SCIPY_ATOL = 1e-12  # the bound: both are O(n) sums of O(1) terms in another order


def _sample(rng, n, ties):
    return rng.integers(0, 4, n).astype(float) if ties else rng.normal(size=n)


def _lp_wp(u, v, a, b, p):
    value, *_ = lp_transport(np.abs(u[:, None] - v[None, :]) ** p, a / a.sum(), b / b.sum())
    return value ** (1 / p)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("weighted", [False, True])
def test_wasserstein_1d_matches_scipy_at_p1(seed, weighted):
    rng = np.random.default_rng(seed)
    u, v = _sample(rng, 13, seed % 2), _sample(rng, 8, seed % 2) + 0.5
    a, b = (rng.random(13), rng.random(8)) if weighted else (None, None)
    expected = scipy.stats.wasserstein_distance(u, v, a, b)
    assert abs(otsolve.wasserstein_1d(u, v, a, b) - expected) <= SCIPY_ATOL


@pytest.mark.parametrize("p", [1.0, 1.5, 2.0])
@pytest.mark.parametrize("case", ["ties", "unequal", "zero_weights"])
def test_wasserstein_1d_matches_lp(p, case):
    rng = np.random.default_rng(int(p * 10))
    n, m = (9, 9) if case == "ties" else (11, 6)
    u, v = _sample(rng, n, case == "ties"), _sample(rng, m, case == "ties")
    a, b = rng.random(n), rng.random(m)
    if case == "zero_weights":
        a[[0, 4]], b[2] = 0.0, 0.0
    expected = _lp_wp(u, v, a, b, p)
    assert otsolve.wasserstein_1d(u, v, a, b, p=p) == pytest.approx(expected, rel=LP_RTOL)
    assert otsolve.wasserstein_1d(v, u, b, a, p=p) == pytest.approx(expected, rel=LP_RTOL)


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 9), m=st.integers(1, 9), seed=st.integers(0, 2**32 - 1), ties=st.booleans(),
       zeros=st.booleans(), p=st.sampled_from([1.0, 1.5, 2.0, 3.0]))
def test_property_small_samples_match_the_sorting_oracle(n, m, seed, ties, zeros, p):
    rng = np.random.default_rng(seed)
    u, v = _sample(rng, n, ties), _sample(rng, m, ties)
    a, b = rng.random(n) + 0.1, rng.random(m) + 0.1
    if zeros and n > 1:
        a[0] = 0.0
    expected = sorted_oracle(u, v, a, b, p) ** (1 / p)
    assert otsolve.wasserstein_1d(u, v, a, b, p=p) == pytest.approx(expected, rel=1e-12, abs=1e-15)
    if p == 1.0:
        assert abs(otsolve.wasserstein_1d(u, v, a, b) - scipy.stats.wasserstein_distance(u, v, a, b)) <= SCIPY_ATOL


def test_wasserstein_1d_batched_equals_looped():
    rng = np.random.default_rng(1)
    U, V = rng.normal(size=(5, 12)), rng.normal(size=(5, 7))
    A, B = rng.random((5, 12)), rng.random(7)  # per-row and shared weights
    batched = otsolve.wasserstein_1d(U, V, A, B, p=1.5)
    looped = [otsolve.wasserstein_1d(U[r], V[r], A[r], B, p=1.5) for r in range(5)]
    assert batched.shape == (5,)
    np.testing.assert_array_equal(batched, looped)  # one kernel, one order of operations
    expected = [sorted_oracle(U[r], V[r], A[r], B, 1.5) ** (1 / 1.5) for r in range(5)]
    np.testing.assert_allclose(batched, expected, rtol=1e-12)


def test_wasserstein_1d_is_wp_not_wp_to_the_p():
    assert otsolve.wasserstein_1d([0.0], [3.0], p=2) == 3.0


@pytest.mark.parametrize("args, error, match", [
    (([0.0, np.nan], [1.0]), ValueError, "u contains nan at 1"),
    (([0.0], [1.0], None, [-1.0]), ValueError, "v_weights has a negative weight -1.0 at 0"),
    (([], [1.0]), ValueError, "u is empty"),
    (([0.0, 1.0], [1.0], [1.0]), ValueError, r"u_weights has shape \(1,\) but u needs 2 entries"),
    (([0.0, 1.0], [1.0], [0.0, 0.0]), ValueError, "u_weights is all zeros"),
    (([[0.0], [1.0]], [[1.0]]), ValueError, "u has 2 rows but v has 1"),
    (([[0.0], [1.0]], [[1.0], [2.0]], [[1.0], [0.0]]), ValueError, r"u_weights\[1\] is all zeros"),
    (([0.0], [[1.0]]), ValueError, "must both be 1-D samples or both"),
    (([0.0], [1.0], None, None, 0.5), ValueError, "p must be >= 1"),
    ((["a"], [1.0]), TypeError, "u has dtype"),
])
def test_wasserstein_1d_rejects_bad_input(args, error, match):
    *arrays, p = args if len(args) == 5 else (*args, 1)
    with pytest.raises(error, match=match):
        otsolve.wasserstein_1d(*arrays, p=p)


def test_inputs_are_unchanged():
    rng = np.random.default_rng(2)
    u, v, a, b = rng.normal(size=6), rng.normal(size=4), rng.random(6), rng.random(4)
    copies = [t.copy() for t in (u, v, a, b)]
    otsolve.wasserstein_1d(u, v, a, b, p=2)
    x, y = rng.normal(size=(6, 2)), rng.normal(size=(4, 2))
    xc, yc = x.copy(), y.copy()
    otsolve.max_sliced_wasserstein(x, y, a, b, seed=0)
    for got, want in zip((u, v, a, b, x, y), (*copies, xc, yc)):
        np.testing.assert_array_equal(got, want)


def _clouds(seed, n=25, m=18, d=3):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, d)), rng.normal(size=(m, d)) * [1.5, 0.5, 1.0][:d] + 1.0, rng.random(n), rng.random(m)


@pytest.mark.parametrize("p", [1.0, 2.0])
def test_sliced_with_given_projections_is_the_mean_of_1d_values(p):
    x, y, a, b = _clouds(3)
    theta = draw_directions(3, 10, "gaussian", 5)
    got = otsolve.sliced_wasserstein(x, y, a, b, p=p, projections=theta)
    costs = [sorted_oracle(x @ t, y @ t, a, b, p) for t in theta.T]
    assert got == pytest.approx(np.mean(costs) ** (1 / p), rel=1e-12)


@pytest.mark.parametrize("p", [1.0, 1.5, 2.0])
def test_sliced_below_max_sliced_below_exact(p):
    x, y, a, b = _clouds(4)
    sliced = otsolve.sliced_wasserstein(x, y, a, b, p=p, seed=0)
    max_sliced = otsolve.max_sliced_wasserstein(x, y, a, b, p=p, seed=0)
    C = np.linalg.norm(x[:, None] - y[None], axis=2) ** p
    exact = lp_transport(C, a / a.sum(), b / b.sum())[0] ** (1 / p)
    assert sliced <= max_sliced <= exact * (1 + LP_RTOL)


def test_max_sliced_beats_many_random_directions():
    x, y, a, b = _clouds(5, d=3)
    value, direction = otsolve.max_sliced_wasserstein(x, y, a, b, p=2, seed=1, return_direction=True)
    assert np.linalg.norm(direction) == pytest.approx(1.0, abs=1e-12)
    assert value == pytest.approx(sorted_oracle(x @ direction, y @ direction, a, b, 2) ** 0.5, rel=1e-12)
    theta = draw_directions(3, 3000, "gaussian", 7)
    best = max(sorted_oracle(x @ t, y @ t, a, b, 2) for t in theta.T) ** 0.5
    assert value >= best


def test_orthogonal_directions_come_in_orthonormal_blocks():
    theta = draw_directions(3, 7, "orthogonal", 0)
    assert theta.shape == (3, 7)
    for lo in (0, 3):
        np.testing.assert_allclose(theta[:, lo:lo + 3].T @ theta[:, lo:lo + 3], np.eye(3), atol=1e-12)
    np.testing.assert_allclose(np.linalg.norm(theta, axis=0), 1.0, rtol=1e-12)
    x, y, _, _ = _clouds(6)
    assert otsolve.sliced_wasserstein(x, y, seed=3) == otsolve.sliced_wasserstein(x, y, seed=3)


def test_sliced_on_the_line_is_wasserstein_1d():
    rng = np.random.default_rng(8)
    u, v = rng.normal(size=9), rng.normal(size=5)
    assert otsolve.sliced_wasserstein(u, v, p=1.5, projections=[[1.0]]) == pytest.approx(
        otsolve.wasserstein_1d(u, v, p=1.5), rel=1e-14)


@pytest.mark.parametrize("kwargs, match", [
    ({"projections": [[1.0, 0.0], [0.0, 2.0]]}, "projections column 1 has norm 2"),
    ({"projections": [[1.0], [0.0], [0.0]]}, r"d = 2 \(the points' dimension\); got shape \(3, 1\)"),
    ({"directions": "uniform"}, "unknown directions 'uniform'"),
    ({"a": [1.0, -1.0, 1.0]}, "a has a negative weight"),
])
def test_sliced_rejects_bad_input(kwargs, match):
    x, y = np.zeros((3, 2)), np.ones((2, 2))
    with pytest.raises(ValueError, match=match):
        otsolve.sliced_wasserstein(x, y, **kwargs)

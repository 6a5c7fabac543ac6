"""Tests of otsolve.transport_map against independent oracles: the closed-form affine (Bures) Monge map
between Gaussians, scipy's linear_sum_assignment, POT's log-domain Sinkhorn scalings."""
import warnings

import numpy as np
import ot
import pytest
from scipy.linalg import sqrtm
from scipy.optimize import linear_sum_assignment
from scipy.stats import norm, qmc

import otsolve

# ---------- oracles (share no code with otsolve) ----------

M1, M2 = np.array([0.0, 0.0]), np.array([1.0, -0.5])
S1 = np.array([[1.0, 0.3], [0.3, 0.5]])
S2 = np.array([[0.6, -0.2], [-0.2, 1.2]])


def bures_map(x, m1=M1, S1=S1, m2=M2, S2=S2):
    """The Monge map between N(m1, S1) and N(m2, S2) for |x - y|^2:
    T(x) = m2 + A (x - m1), A = S1^{-1/2} (S1^{1/2} S2 S1^{1/2})^{1/2} S1^{-1/2}."""
    r = np.real(sqrtm(S1))
    ri = np.linalg.inv(r)
    A = ri @ np.real(sqrtm(r @ S2 @ r)) @ ri
    return m2 + (x - m1) @ A.T


def gaussian_qmc(n, seed, m, S):
    """n points of N(m, S) from a scrambled Sobol sequence (far less sampling noise than iid draws)."""
    u = qmc.Sobol(2, scramble=True, seed=seed).random(n)
    return m + norm.ppf(u) @ np.linalg.cholesky(S).T


def sq_costs(x, y):
    return ((x[:, None, :] - y[None, :, :]) ** 2).sum(-1)


def pot_entropic_map(x, y, x_new, reg):
    """Entropic map from POT's scalings: P = diag(u) K diag(v), so T(x) = softmax_j(log v_j - c(x, y_j)/reg) y_j."""
    a, b = np.full(len(x), 1 / len(x)), np.full(len(y), 1 / len(y))
    _, log = ot.bregman.sinkhorn_log(a, b, sq_costs(x, y), reg, numItermax=100_000, stopThr=1e-12, log=True)
    z = log["log_v"][None, :] - sq_costs(x_new, y) / reg
    w = np.exp(z - z.max(axis=1, keepdims=True))
    return (w / w.sum(axis=1, keepdims=True)) @ y


def rms(u, v):
    return float(np.sqrt(np.mean(np.sum((u - v) ** 2, axis=1))))


@pytest.fixture(scope="module")
def gaussians():
    x, y = gaussian_qmc(512, 1, M1, S1), gaussian_qmc(512, 2, M2, S2)
    x_new = np.random.default_rng(3).multivariate_normal(M1, S1, 400)
    inner = np.einsum("ij,ij->i", np.linalg.solve(S1, (x_new - M1).T).T, x_new - M1) < 4  # within 2 sigma
    return x, y, x_new[inner]


# Measured RMS errors against the Bures map at n = 512 (Sobol points; seeds fixed), bounds ~1.3x:
# exact 0.145 (sources) / 0.098 (new points, Laguerre); Sinkhorn and semi-dual at reg 0.1: 0.084 / 0.042
# (entropic bias and discretisation); semi-dual reg 0: 0.138 / 0.084. Data spread sqrt(tr S2) = 1.34.
@pytest.mark.parametrize("method, reg, options, src_bound, new_bound", [
    ("exact", None, {}, 0.19, 0.13),
    ("sinkhorn", 0.1, {"tol": 1e-7}, 0.11, 0.055),
    ("semidual", 0.1, {"seed": 0}, 0.11, 0.055),
    ("semidual", 0.0, {"seed": 0}, 0.18, 0.11),
])
def test_gaussian_map_near_bures(gaussians, method, reg, options, src_bound, new_bound):
    x, y, x_new = gaussians
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", otsolve.ConvergenceWarning)
        T = otsolve.transport_map(x, y, method=method, reg=reg, **options)
    if method == "semidual" and reg == 0.0:  # a stall at reg 0 is optimal only when certified
        assert T.result.success == (T.result.duality_gap <= 1e-3 * T.result.value)
    else:
        assert T.result.success
    assert T.at_sources.shape == x.shape
    assert rms(T.at_sources, bures_map(x)) < src_bound
    assert rms(T(x_new), bures_map(x_new)) < new_bound


def test_exact_map_approaches_bures_as_n_grows():
    x_new = np.random.default_rng(3).multivariate_normal(M1, S1, 400)
    errors = []
    for n in (128, 1024):
        T = otsolve.transport_map(gaussian_qmc(n, 1, M1, S1), gaussian_qmc(n, 2, M2, S2))
        errors.append(rms(T(x_new), bures_map(x_new)))
    assert errors[1] < 0.6 * errors[0]  # measured 0.27 -> 0.11 (all of x_new, tails included)


def test_at_sources_is_plan_projection():
    rng = np.random.default_rng(4)
    x, y = rng.normal(size=(9, 2)), rng.normal(size=(7, 2))
    a, b = rng.uniform(0.5, 1.5, 9), rng.uniform(0.5, 1.5, 7)
    a, b = a / a.sum(), b / b.sum()
    for method, reg in (("exact", None), ("sinkhorn", 0.2)):
        T = otsolve.transport_map(x, y, a, b, method=method, reg=reg)
        P = otsolve.exact(sq_costs(x, y), a, b).plan.toarray() if method == "exact" else \
            otsolve.sinkhorn(sq_costs(x, y), a, b, reg=reg).plan
        np.testing.assert_allclose(T.at_sources, P @ y / a[:, None], atol=1e-9)  # Sinkhorn tol 1e-9


def permutation_problem(seed, n=12):
    rng = np.random.default_rng(seed)
    x, y = rng.uniform(size=(n, 2)), rng.uniform(size=(n, 2))
    _, col = linear_sum_assignment(sq_costs(x, y))
    return x, y, y[col]


@pytest.mark.parametrize("seed", [0, 1])
def test_permutation_exact_and_laguerre(seed):
    x, y, assigned = permutation_problem(seed)
    T = otsolve.transport_map(x, y)
    np.testing.assert_allclose(T.at_sources, assigned, atol=1e-14)
    np.testing.assert_array_equal(T(x), assigned)  # centred duals: each source inside its own cell
    # semi-dual at reg 0: g weights Laguerre cells with the targets' masses, sources inside their cells
    T0 = otsolve.transport_map(x, y, method="semidual", reg=0, seed=0)
    np.testing.assert_array_equal(T0(x), assigned)
    np.testing.assert_array_equal(T0.at_sources, assigned)


@pytest.mark.parametrize("seed, n, m", [(0, 12, 12), (1, 9, 7), (2, 30, 30)])
def test_centred_exact_potential_is_optimal_and_strict(seed, n, m):
    rng = np.random.default_rng(seed)
    x, y = rng.uniform(size=(n, 2)), rng.uniform(size=(m, 2))
    a, b = rng.uniform(0.5, 1.5, n), rng.uniform(0.5, 1.5, m)
    a, b = a / a.sum(), b / b.sum()
    C = sq_costs(x, y)
    value = lp_value(C, a, b)
    T = otsolve.transport_map(x, y, a, b)
    f = (C - T.g[None, :]).min(axis=1)  # the c-transform of the centred g
    assert a @ f + b @ T.g == pytest.approx(value, rel=1e-12)  # still dual-optimal (HiGHS value)
    slack = C - f[:, None] - T.g[None, :]
    support = T.result.plan.toarray() > 0
    assert np.abs(slack[support]).max() < 1e-12
    # off the support the vertex duals of the simplex leave >= n + m - 1 - nnz tight pairs; centred: none
    vertex = C - T.result.f[:, None] - T.result.g[None, :]
    assert np.sum(np.abs(vertex[~support]) < 1e-12) >= n + m - 1 - support.sum()
    assert slack[~support].min() > 1e-9


def lp_value(C, a, b):
    from scipy.optimize import linprog
    from scipy.sparse import eye, kron, vstack
    n, m = C.shape
    A = vstack([kron(eye(n), np.ones((1, m))), kron(np.ones((1, n)), eye(m))])
    res = linprog(C.ravel(), A_eq=A, b_eq=np.concatenate([a, b]), method="highs")
    assert res.status == 0
    return res.fun


def test_entropic_map_at_sources_tends_to_assignment():
    x, y, assigned = permutation_problem(0)
    errors = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", otsolve.ConvergenceWarning)  # reg 1e-3 stops near tol 1e-6
        for reg in (1e-1, 1e-2, 1e-3):
            T = otsolve.transport_map(x, y, method="sinkhorn", reg=reg, tol=1e-6, max_iter=3000)
            # T(x_i) is at_sources normalised by the row mass: equal up to the marginal error
            row_error = T.result.marginal_error / T.a.min()
            assert np.abs(T(x) - T.at_sources).max() <= 2 * row_error * np.abs(y).max() + 1e-12
            errors.append(np.abs(T.at_sources - assigned).max())
    assert errors[0] > errors[1] > errors[2]
    assert errors[2] < 0.02  # measured 0.0074 at reg 1e-3 (costs in [0, 2])


def test_entropic_map_new_points_against_pot():
    rng = np.random.default_rng(5)
    x, y, x_new = rng.normal(size=(30, 2)), rng.normal(size=(25, 2)) + 1, rng.normal(size=(10, 2))
    T = otsolve.transport_map(x, y, method="sinkhorn", reg=0.5, tol=1e-12)
    np.testing.assert_allclose(T(x_new), pot_entropic_map(x, y, x_new, 0.5), atol=1e-8)  # both solved to 1e-12


def test_laguerre_map_is_monotone_in_1d():
    rng = np.random.default_rng(6)
    x, y = np.sort(rng.normal(size=20)), np.sort(rng.normal(size=20) * 2 + 1)
    T = otsolve.transport_map(x, y, p=2)
    np.testing.assert_allclose(T.at_sources.ravel(), y, atol=1e-14)  # sorted to sorted
    grid = np.linspace(x[0], x[-1], 500)
    t = T(grid).ravel()
    assert np.all(np.diff(t) >= 0)  # cells of a convex potential's gradient are ordered
    k = np.clip(np.searchsorted(x, grid) - 1, 0, len(x) - 2)  # grid point between x_k and x_{k+1}
    assert np.all((t == y[k]) | (t == y[k + 1]))


def test_zero_weight_target_is_never_chosen():
    x, y = np.array([[0.0], [1.0]]), np.array([[0.0], [0.5], [1.0]])
    b, grid = np.array([0.5, 0.0, 0.5]), np.linspace(-0.5, 1.5, 21)
    for method in ("exact", "semidual"):
        T = otsolve.transport_map(x, y, b=b, method=method, **({"seed": 0} if method == "semidual" else {}))
        assert set(T(grid).ravel()) <= {0.0, 1.0}
    T = otsolve.transport_map(x, y, b=b, method="sinkhorn", reg=0.05, tol=1e-12)
    T_without = otsolve.transport_map(x, y[[0, 2]], method="sinkhorn", reg=0.05, tol=1e-12)
    np.testing.assert_allclose(T(grid), T_without(grid), atol=1e-10)


def test_inputs_unchanged_and_repr():
    x, y = np.array([[0.0, 1.0], [2.0, 3.0]]), np.array([[1.0, 1.0], [0.0, 0.0]])
    x0, y0 = x.copy(), y.copy()
    T = otsolve.transport_map(x, y)
    T(x)
    np.testing.assert_array_equal(x, x0)
    np.testing.assert_array_equal(y, y0)
    assert "method='exact'" in repr(T)


@pytest.mark.parametrize("kwargs, error, match", [
    ({"method": "monge"}, ValueError, "unknown method 'monge'"),
    ({"method": "exact", "reg": 0.1}, ValueError, "reg is not used by method='exact'"),
    ({"method": "sinkhorn"}, ValueError, "reg is required"),
    ({"method": "sinkhorn", "reg": -1.0}, ValueError, "reg must be > 0"),
    ({"method": "semidual", "reg": "a"}, TypeError, "reg must be a real number"),
    ({"p": 0}, ValueError, "p must be > 0"),
    ({"b": [0.5, 0.6]}, ValueError, "equal total mass"),
    ({"a": [1.0]}, ValueError, "a has 1 entries"),
])
def test_bad_input(kwargs, error, match):
    x, y = np.array([[0.0, 1.0], [2.0, 3.0]]), np.array([[1.0, 1.0], [0.0, 0.0]])
    with pytest.raises(error, match=match):
        otsolve.transport_map(x, y, **kwargs)


def test_bad_points():
    with pytest.raises(ValueError, match="same dimension"):
        otsolve.transport_map(np.zeros((2, 2)), np.zeros((2, 3)))
    with pytest.raises(ValueError, match="x contains nan"):
        otsolve.transport_map(np.array([[np.nan, 0.0]]), np.zeros((1, 2)))
    T = otsolve.transport_map(np.zeros((2, 2)), np.ones((2, 2)))
    with pytest.raises(ValueError, match="x_new has points of dimension 3"):
        T(np.zeros((4, 3)))
    with pytest.raises(TypeError, match="x_new has dtype"):
        T(np.array([["a", "b"]]))

"""Sliced and max-sliced Wasserstein distances: 1-D transport of projections on directions."""
from __future__ import annotations

import numpy as np

from .._validation import as_float_array, check_choice, check_count, check_point_clouds, check_weights
from . import _kernels
from .oned import check_order, sorted_cumulative

DIRECTIONS = ("orthogonal", "gaussian")
UNIT_NORM_TOL = 1e-6  # |norm - 1| accepted for a given projection: float32 round trips and hand-typed values
ASCENT_STEP = 0.5     # first step of the ascent, in radians along the sphere: a large turn, halved on failure
MIN_STEP = 1e-9       # radians: below this no turn changes W_p^p beyond rounding


def sliced_wasserstein(x, y, a=None, b=None, *, p=2, n_projections=64, projections=None,
                       directions="orthogonal", seed=None) -> float:
    r"""Return the sliced p-Wasserstein distance between two weighted point clouds.

    .. math:: SW_p(\alpha, \beta) = \Big(\frac1L \sum_{l=1}^L W_p^p(\theta_l^T \alpha, \theta_l^T \beta)\Big)^{1/p}

    Each projection is a 1-D problem solved in closed form (:func:`otsolve.wasserstein_1d`).

    Parameters
    ----------
    x, y : (n, d), (m, d) array_like
        Point clouds.
    a, b : (n,), (m,) array_like, optional
        Non-negative weights (uniform when omitted), each normalised to unit mass.
    p : float, default 2
        Order, ``p >= 1``.
    n_projections : int, default 64
        Number L of random directions (ignored with ``projections``).
    projections : (d, L) array_like, optional
        The directions, as unit columns.
    directions : {"orthogonal", "gaussian"}
        ``"orthogonal"`` draws blocks of d random orthonormal directions (lower variance than
        independent draws); ``"gaussian"`` draws each uniformly on the sphere.
    seed : int or numpy.random.Generator, optional

    Returns
    -------
    float

    References
    ----------
    Bonneel, Rabin, Peyre, Pfister (2015), Sliced and Radon Wasserstein barycenters of measures.

    Examples
    --------
    >>> import otsolve
    >>> otsolve.sliced_wasserstein([[0.0, 0.0]], [[3.0, 0.0]], p=1, projections=[[1.0], [0.0]])
    3.0
    """
    x, y, a, b, p = _check_pair(x, y, a, b, p)
    theta = directions_for(projections, n_projections, directions, seed, x.shape[1])
    S, CS, offsets = project_sorted([x, y], [a, b], theta)
    out = np.empty(1)
    _kernels.sliced_pairs(S, CS, offsets, np.array([0]), np.array([1]), p, out)
    return float(max(out[0], 0.0) ** (1.0 / p))


def max_sliced_wasserstein(x, y, a=None, b=None, *, p=2, n_projections=64, projections=None,
                           directions="orthogonal", seed=None, n_starts=4, max_iter=100,
                           return_direction=False):
    r"""Return the max-sliced p-Wasserstein distance, the direction being optimised.

    .. math:: \max_{|\theta| = 1} W_p(\theta^T \alpha, \theta^T \beta)

    The ``n_starts`` best of the candidate directions (drawn as in :func:`sliced_wasserstein`)
    start a projected gradient ascent on the sphere; the gradient comes from the 1-D optimal
    coupling of the projections, and a step that does not increase W_p is halved. The problem
    is not concave: the value is a local maximum, at least the best candidate's.

    Parameters
    ----------
    x, y, a, b, p, n_projections, projections, directions, seed
        As in :func:`sliced_wasserstein`.
    n_starts : int, default 4
        Number of ascents, from the best candidates.
    max_iter : int, default 100
        Steps per ascent.
    return_direction : bool, default False
        Also return the maximising unit direction, a (d,) array.

    Returns
    -------
    float, or (float, (d,) ndarray) with ``return_direction``

    References
    ----------
    Deshpande et al. (2019), Max-sliced Wasserstein distance and its use for GANs.

    Examples
    --------
    >>> import otsolve
    >>> round(otsolve.max_sliced_wasserstein([[0.0, 0.0]], [[3.0, 4.0]], p=1, seed=0), 9)
    5.0
    """
    x, y, a, b, p = _check_pair(x, y, a, b, p)
    n_starts, max_iter = check_count(n_starts, "n_starts"), check_count(max_iter, "max_iter", minimum=0)
    theta = directions_for(projections, n_projections, directions, seed, x.shape[1])
    U, CU = sorted_cumulative(np.ascontiguousarray((x @ theta).T), a)
    V, CV = sorted_cumulative(np.ascontiguousarray((y @ theta).T), b)
    costs = np.empty(theta.shape[1])
    _kernels.batch_costs(U, CU, V, CV, p, costs)
    objective = _Objective(x, y, a, b, p)
    best_value, best_theta = -np.inf, None
    for col in np.argsort(-costs, kind="stable")[:n_starts]:
        value, direction = _ascend(objective, theta[:, col].copy(), max_iter)
        if value > best_value:
            best_value, best_theta = value, direction
    distance = float(max(best_value, 0.0) ** (1.0 / p))
    return (distance, best_theta) if return_direction else distance


class _Objective:
    """theta -> (W_p^p of the projections on theta, its gradient from the optimal 1-D coupling)."""

    def __init__(self, x, y, a, b, p):
        self.x, self.y, self.p = x, y, p
        self.a, self.b = a, b
        self.grad = np.empty(x.shape[1])

    def __call__(self, theta):
        pu, pv = self.x @ theta, self.y @ theta
        iu, cu = _order(pu, self.a)
        iv, cv = _order(pv, self.b)
        value = _kernels.merge_gradient(iu, cu, pu, iv, cv, pv, self.x, self.y, self.p, self.grad)
        return value, self.grad.copy()


def _order(values, weights):
    order = np.argsort(values)
    cum = np.arange(1, len(values) + 1) / len(values) if weights is None else np.cumsum(weights[order])
    if weights is not None:
        cum /= cum[-1]
        cum[-1] = 1.0
    return order, cum


def _ascend(objective, theta, max_iter):
    """Projected gradient ascent on the unit sphere with step halving; returns (value, theta)."""
    value, grad = objective(theta)
    step = ASCENT_STEP
    for _ in range(max_iter):
        tangent = grad - (grad @ theta) * theta
        norm = np.linalg.norm(tangent)
        if norm == 0.0 or step < MIN_STEP:
            break
        trial = theta + np.tan(step) * tangent / norm  # a turn by `step` radians towards the gradient
        trial /= np.linalg.norm(trial)
        trial_value, trial_grad = objective(trial)
        if trial_value > value:
            theta, value, grad = trial, trial_value, trial_grad
            step = min(2.0 * step, ASCENT_STEP)
        else:
            step /= 2.0
    return value, theta


def _check_pair(x, y, a, b, p):
    x, y = check_point_clouds(x, y)
    a = None if a is None else check_weights(a, x.shape[0], "a", dim_name="points in x")
    b = None if b is None else check_weights(b, y.shape[0], "b", dim_name="points in y")
    return x, y, a, b, check_order(p)


def directions_for(projections, n_projections, directions, seed, d):
    """The (d, L) unit directions: ``projections`` checked, or L drawn."""
    if projections is not None:
        return check_projections(projections, d)
    check_choice(directions, "directions", DIRECTIONS)
    return draw_directions(d, check_count(n_projections, "n_projections"), directions, seed)


def draw_directions(d, L, kind, seed):
    """L random unit directions in R^d as columns: independent, or in orthonormal blocks of d."""
    rng = np.random.default_rng(seed)
    if kind == "gaussian":
        theta = rng.normal(size=(d, L))
        return theta / np.linalg.norm(theta, axis=0)
    blocks = []
    for _ in range(-(-L // d)):
        q, r = np.linalg.qr(rng.normal(size=(d, d)))
        blocks.append(q * np.where(np.diag(r) < 0, -1.0, 1.0))  # Haar-distributed (Mezzadri 2007)
    return np.ascontiguousarray(np.concatenate(blocks, axis=1)[:, :L])


def check_projections(projections, d):
    theta = as_float_array(projections, "projections")
    if theta.ndim == 1 and d == 1:
        theta = theta[None, :]
    if theta.ndim != 2 or theta.shape[0] != d or theta.shape[1] == 0:
        raise ValueError(f"projections must be a (d, L) array of unit columns with d = {d} (the points' "
                         f"dimension); got shape {theta.shape}")
    if not np.isfinite(theta).all():
        raise ValueError("projections contains non-finite values")
    norms = np.linalg.norm(theta, axis=0)
    bad = np.flatnonzero(np.abs(norms - 1.0) > UNIT_NORM_TOL)
    if len(bad):
        raise ValueError(f"projections column {int(bad[0])} has norm {norms[bad[0]]:.6g}; columns must be unit "
                         "vectors (divide by np.linalg.norm(projections, axis=0))")
    return theta


def project_sorted(clouds, weights, theta):
    """Every cloud projected on the columns of theta and sorted: rows (L, total) of sorted
    projections and of cumulative weights, cloud k in columns offsets[k]:offsets[k + 1]."""
    values, cums = [], []
    for x, w in zip(clouds, weights):
        s, c = sorted_cumulative(np.ascontiguousarray((x @ theta).T), w)
        values.append(s)
        cums.append(np.broadcast_to(c, s.shape))
    offsets = np.concatenate([[0], np.cumsum([x.shape[0] for x in clouds])]).astype(np.int64)
    return np.concatenate(values, axis=1), np.concatenate(cums, axis=1), offsets

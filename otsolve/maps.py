"""Transport maps from a solved OT problem: the barycentric projection of the plan at the sources and,
for new points, the map given by the target potential g (entropic softmax, or Laguerre cells)."""
from __future__ import annotations

import numpy as np
import scipy.sparse
from scipy.sparse.csgraph import connected_components, csgraph_from_dense, dijkstra

from ._costs import cost_matrix
from ._validation import check_balanced, check_choice, check_point_clouds, check_points, check_positive, check_weights
from .entropic import sinkhorn_points
from .lp import exact, exact_points
from .stochastic import semidual_sgd
from .wasserstein import DENSE_MAX_ENTRIES

METHODS = ("exact", "sinkhorn", "semidual")
CHUNK_ENTRIES = 2**20  # costs evaluated per block of rows (8 MiB): memory O(n_new + m), not O(n_new m)
CENTRE_ROOTS = 32      # exact duals are centred by averaging the extreme shifts seen from this many
                       # components (all when fewer): O(roots K^2) for K components of the plan


def transport_map(x, y, a=None, b=None, *, method="exact", p=2, reg=None, **options):
    r"""Solve OT between two point clouds and return the transport map it defines.

    .. math::
        T(x) = \sum_j \mathrm{softmax}_j\Big(\frac{g_j - \|x - y_j\|^p}{\varepsilon} + \log b_j\Big)\, y_j
        \quad(\varepsilon > 0), \qquad T(x) = y_{j^*},\ j^* = \arg\min_{j:\, b_j > 0} \|x - y_j\|^p - g_j
        \quad(\varepsilon = 0)

    For p = 2 and a potential phi of the source side, the entropic map is the smoothed version of
    Brenier's ``x - grad phi(x) / 2`` (the seed's ``x - (grad h)^{-1}(grad phi(x))``, h = |.|^2).

    Parameters
    ----------
    x, y : (n, d), (m, d) array_like
        Source and target point clouds.
    a, b : (n,), (m,) array_like, optional
        Weights of equal mass (uniform when omitted).
    method : {"exact", "sinkhorn", "semidual"}
        :func:`otsolve.exact` (reg must be None or 0; the map is the Laguerre-cell map),
        :func:`otsolve.sinkhorn_points` (reg > 0 required) or :func:`otsolve.semidual_sgd`
        (reg >= 0, default 0) on the cost ``|x - y|^p``.
    p : float, default 2
        Exponent of the Euclidean cost; the map is unique (Brenier) for p > 1.
    reg : float, optional
        Entropic strength epsilon in cost units.
    **options
        Passed to the solver (``tol``, ``max_iter``, ``seed``, ...).

    Returns
    -------
    TransportMap
        ``.at_sources`` (n, d): the barycentric projection ``sum_j P_ij y_j / a_i`` of the plan
        (rows with a_i = 0: T(x_i)); ``map(x_new)``: T above from the target potential ``.g``
        (the solver's, centred in the optimal dual set for the exact solver); ``.result``.

    Raises
    ------
    ValueError, TypeError
        On invalid clouds or weights (as the solvers), an unknown method, or a reg the method
        does not take.

    Examples
    --------
    >>> import otsolve
    >>> T = otsolve.transport_map([[0.0], [1.0]], [[3.0], [2.0]])
    >>> T.at_sources.ravel().tolist(), T([[0.1]]).ravel().tolist()
    ([2.0, 3.0], [2.0])
    """
    method = check_choice(method, "method", METHODS)
    reg = _check_reg(reg, method)
    x, y = check_point_clouds(x, y)
    a = check_weights(a, x.shape[0], "a", dim_name=f"points in x, x.shape == {x.shape}")
    b = check_balanced(a, check_weights(b, y.shape[0], "b", dim_name=f"points in y, y.shape == {y.shape}"))
    p = check_positive(p, "p")
    g = None
    if method == "exact":
        if x.shape[0] * y.shape[0] > DENSE_MAX_ENTRIES:
            res = exact_points(x, y, a, b, p=p, metric="euclidean", **options)
        else:
            C = cost_matrix(x, y, p=p)
            res = exact(C, a, b, **options)
            g = central_target_potential(C, res.plan, a, b, res.f, res.g)
    elif method == "sinkhorn":
        res = sinkhorn_points(x, y, a, b, reg=reg, p=p, **options)
    else:
        res = semidual_sgd(cost_matrix(x, y, p=p), a, b, reg=reg, **options)
    return TransportMap(x, y, a, b, res, method=method, p=p, reg=reg, g=g)


class TransportMap:
    """The map of a solved OT problem between ``x`` (weights ``a``) and ``y`` (weights ``b``).

    Attributes
    ----------
    at_sources : (n, d) ndarray
        Barycentric projection ``sum_j P_ij y_j / a_i`` of the solver's plan. Sinkhorn: its plan
        ``P_ij = a_i b_j exp((f_i + g_j - C_ij) / reg)``, equal to ``T(x_i)`` up to the solver's
        row marginal error; semi-dual: the plan implied by g, so exactly ``T(x_i)``.
    result : OTResult
        The solve.
    g : (m,) ndarray
        The target potential that defines ``T`` for new points: ``result.g``, except for the exact
        solver on a dense cost matrix, whose vertex duals put sources on boundaries of Laguerre cells
        (the zero-flow arcs of the simplex tree are tight; a permutation has n - 1 of them): there g
        is moved to the middle of the optimal dual set (:func:`central_target_potential`; same plan,
        same dual value).
    method, p, reg : the problem solved (reg 0 for the exact solver).

    Calling the map, ``T(x_new)`` with ``x_new`` of shape (k, d) (or (k,) in 1-D) returns (k, d)
    targets. With reg = 0 a point on a boundary of Laguerre cells takes the first tied target.
    """

    def __init__(self, x, y, a, b, result, *, method, p, reg, g=None):
        self.x, self.y, self.a, self.b = x, y, a, b
        self.result, self.method, self.p, self.reg = result, method, p, reg
        with np.errstate(divide="ignore"):  # zero target weight: log 0 = -inf, never a target
            self._log_b = np.log(b)
        self.g = np.asarray(result.g if g is None else g, dtype=np.float64)
        self.at_sources = self._barycentric_projection()

    def __call__(self, x_new):
        x_new = check_points(x_new, "x_new")
        if x_new.shape[1] != self.y.shape[1]:
            raise ValueError(f"x_new has points of dimension {x_new.shape[1]} (x_new.shape == {x_new.shape}) "
                             f"but the map was fitted on points of dimension {self.y.shape[1]}")
        return _targets(x_new, self.y, self._log_b, self.g, self.reg, self.p)

    def _barycentric_projection(self):
        x, y, a = self.x, self.y, self.a
        if self.method == "exact":
            out = np.asarray(self.result.plan @ y) / np.where(a > 0, a, 1.0)[:, None]
        elif self.method == "sinkhorn":
            f = np.asarray(self.result.f, dtype=np.float64)
            out = _targets(x, y, self._log_b, self.g, self.reg, self.p, f=f)
        else:
            return _targets(x, y, self._log_b, self.g, self.reg, self.p)
        empty = a == 0
        if empty.any():
            out[empty] = self(x[empty])
        return out

    def __repr__(self):
        return (f"TransportMap(method={self.method!r}, p={self.p}, reg={self.reg}, "
                f"n={self.x.shape[0]}, m={self.y.shape[0]}, d={self.y.shape[1]})")


def _targets(x, y, log_b, g, reg, p, f=None):
    """T(x_i) in blocks of rows; with ``f`` the unnormalised Sinkhorn plan rows P_ij / a_i instead."""
    n, m = x.shape[0], y.shape[0]
    out = np.empty((n, y.shape[1]))
    rows = max(1, CHUNK_ENTRIES // m)
    for s in range(0, n, rows):
        C = cost_matrix(x[s:s + rows], y, p=p)
        if reg == 0:
            z = np.where(np.isfinite(log_b), g, -np.inf)[None, :] - C  # maximise g_j - C_ij over b_j > 0
            out[s:s + rows] = y[np.argmax(z, axis=1)]
            continue
        z = log_b[None, :] + (g[None, :] - C) / reg
        if f is None:
            w = np.exp(z - z.max(axis=1, keepdims=True))
            w /= w.sum(axis=1, keepdims=True)
        else:
            w = np.exp(z + f[s:s + rows, None] / reg)
        out[s:s + rows] = w @ y
    return out


def central_target_potential(C, plan, a, b, f, g, seed=0):
    """An optimal target potential in the middle of the optimal dual set of an exact solve.

    Optimal duals are those with f_i + g_j = C_ij on the plan's support and <= C_ij elsewhere; on each
    connected component k of the support they are fixed up to a shift (f + s_k, g - s_k), feasible when
    s_k - s_l <= w_kl = min over sources i in k, targets j in l of C_ij - f_i - g_j (difference
    constraints). From a root r, s = dist(r, .) and s = -dist(., r) in the graph with edges l -> k of
    weight w_kl are the two extreme feasible shifts; their average over roots is feasible and strict
    on every constraint that some optimal dual leaves slack (ties that remain are genuine: an
    alternative optimal plan). Zero-weight rows and columns take no part; their g is kept.
    """
    rows, cols = np.flatnonzero(a > 0), np.flatnonzero(b > 0)
    P = scipy.sparse.csr_array(plan)[rows][:, cols]
    n, m = P.shape
    graph = scipy.sparse.bmat([[None, P], [P.T, None]])
    k, labels = connected_components(graph, directed=False)
    if k == 1:
        return np.array(g, dtype=np.float64)
    lab_r, lab_c = labels[:n], labels[n:]
    slack = np.maximum(C[np.ix_(rows, cols)] - f[rows, None] - g[None, cols], 0.0)
    order_r, order_c = np.argsort(lab_r, kind="stable"), np.argsort(lab_c, kind="stable")
    starts_r = np.searchsorted(lab_r[order_r], np.arange(k))  # every component has a row and a column
    starts_c = np.searchsorted(lab_c[order_c], np.arange(k))
    w = np.minimum.reduceat(np.minimum.reduceat(slack[order_r], starts_r, axis=0)[:, order_c], starts_c, axis=1)
    np.fill_diagonal(w, np.inf)
    edges = csgraph_from_dense(w.T, null_value=np.inf)  # edge l -> k of weight w[k, l]; zeros are edges
    roots = np.arange(k) if k <= CENTRE_ROOTS else np.random.default_rng(seed).choice(k, CENTRE_ROOTS, replace=False)
    shift = 0.5 * (dijkstra(edges, indices=roots).mean(axis=0) - dijkstra(edges.T, indices=roots).mean(axis=0))
    out = np.array(g, dtype=np.float64)
    out[cols] -= shift[lab_c]
    return out


def _check_reg(reg, method):
    if method == "exact":
        if reg is not None and reg != 0:
            raise ValueError(f"reg is not used by method='exact'; got reg={reg!r} (use method='sinkhorn' "
                             "or 'semidual' for an entropic map)")
        return 0.0
    if method == "sinkhorn":
        if reg is None:
            raise ValueError("reg is required for method='sinkhorn' (entropic strength in cost units, > 0)")
        return check_positive(reg, "reg")
    return 0.0 if reg is None else check_positive(reg, "reg", allow_zero=True)

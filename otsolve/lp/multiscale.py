"""Exact OT between large point clouds: a multiscale network simplex on sparse arc sets,
certified over all pairs (Schmitzer 2016)."""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse
import scipy.spatial

from .._cells import kd_cells, kd_labels
from .._costs import CITYBLOCK_POW, SQEUCLIDEAN, cost_code
from .._result import OTResult, Status
from .._validation import check_balanced, check_point_clouds, check_weights
from . import _kernels, _sparse_kernels as _sk
from .network_simplex import REDUCED_COST_TOL

COARSE_DEPTH = 8        # the coarsest level has 2**8 = 256 clusters per cloud: solved on all pairs
HALVINGS = 2            # k-d tree depths per level: each level has 4x fewer clusters than the next
NEIGHBOUR_CELLS = 1     # a coarse arc (I', J) also proposes (I, J) for the k clusters I nearest
                        # to I'; k = 1 (off) measured fastest: more arcs up front cost the
                        # artificial start more pivots than the pricing rounds they save
NEW_ARCS_PER_ROW = 10   # per row and pricing round, the most violating pairs added to the arc list
CELL_HALVINGS = 4       # pricing cells of the k-d tree hold about 2**4 = 16 points
MAX_ROUNDS = 100        # pricing rounds per level; each adds >= 1 arc, so this only guards bugs
ARTIFICIAL_GROWTH = 4.0  # big-M grows by this factor while artificial arcs still carry flow
ARTIFICIAL_FLOW_RTOL = 1e-12  # artificial flow below this (relative to the mass) is rounding of
                              # the subtree sums of ~1e5 weights
CERTIFICATE_RTOL = 1e-11  # max dual violation, relative to the cost bound, for an OPTIMAL status


@dataclass
class MultiscaleStats:
    """What a multiscale solve did: per level (coarsest first) clusters, arcs kept, pivots,
    pricing rounds; seconds per phase."""
    sizes: list = field(default_factory=list)
    arcs: list = field(default_factory=list)
    pivots: list = field(default_factory=list)
    rounds: list = field(default_factory=list)
    seconds: dict = field(default_factory=lambda: {"hierarchy": 0.0, "candidates": 0.0, "simplex": 0.0,
                                                   "pricing": 0.0, "certificate": 0.0})


def exact_multiscale(x, y, a=None, b=None, *, p=2, metric="euclidean") -> OTResult:
    r"""Solve exact OT between point clouds by a multiscale network simplex.

    .. math:: \min_{P \in U(a, b)} \sum_{ij} P_{ij}\, d(x_i, y_j)^p

    Both clouds are clustered by balanced k-d trees; the coarsest problem is solved on all
    pairs, and each finer one on a sparse arc set (the children of the coarse plan's support),
    warm-started from the coarse duals. All n m pairs are then priced in parallel from coordinates and every row's
    most violating pairs are added until none is left, so the result is optimal for the full
    problem. Memory O(n + m + arcs kept).

    Parameters
    ----------
    x, y : (n, d), (m, d) array_like
        Point clouds.
    a, b : (n,), (m,) array_like, optional
        Non-negative weights of equal mass (uniform when omitted); zero weights are allowed.
    p : float, default 2
    metric : {"euclidean", "sqeuclidean", "cityblock"}

    Returns
    -------
    OTResult
        As :func:`otsolve.exact`: sparse ``plan``, potentials ``f, g`` with ``a.f == b.g``;
        ``max_dual_violation`` is taken over all n m pairs, and the status is optimal only
        when it is below ``CERTIFICATE_RTOL`` of the largest possible cost.

    References
    ----------
    Schmitzer (2016), A sparse multiscale algorithm for dense optimal transport, JMIV.

    Examples
    --------
    >>> import otsolve
    >>> from otsolve.lp import exact_multiscale
    >>> round(exact_multiscale([0.0, 1.0], [2.0, 3.0], p=1).value, 12)
    2.0
    """
    return solve_multiscale(x, y, a, b, p=p, metric=metric)[0]


def solve_multiscale(x, y, a=None, b=None, *, p=2, metric="euclidean"):
    """:func:`exact_multiscale` returning ``(OTResult, MultiscaleStats)``."""
    x, y = check_point_clouds(x, y)
    n, m = x.shape[0], y.shape[0]
    a = check_weights(a, n, "a", dim_name="points in x")
    b = check_balanced(a, check_weights(b, m, "b", dim_name="points in y"))
    code, p = cost_code(metric, p)
    stats = MultiscaleStats()
    with np.errstate(over="ignore"):
        scale = _cost_bound(x, y, code, p)
    if not math.isfinite(scale):
        raise ValueError(f"the costs {metric}(x, y) ** {p:g} of these points overflow float64; rescale x and y "
                         "(the optimal plan does not change when both are scaled alike)")
    tol = REDUCED_COST_TOL * scale
    both = np.concatenate([x, y])
    centre = (both.min(axis=0) + both.max(axis=0)) / 2  # costs are shift-invariant; bounds want small |x|
    x, y = x - centre, y - centre
    rows, cols = np.flatnonzero(a > 0), np.flatnonzero(b > 0)
    xs, ys, as_, bs = x[rows], y[cols], a[rows], b[cols]
    start = time.perf_counter()
    depths_x, depths_y = _depths(len(as_)), _depths(len(bs))
    depth = max(len(depths_x), len(depths_y))
    levels_x, order_x = _hierarchy(xs, as_, depths_x + depths_x[-1:] * (depth - len(depths_x)))
    levels_y, order_y = _hierarchy(ys, bs, depths_y + depths_y[-1:] * (depth - len(depths_y)))
    rows, cols = rows[order_x], cols[order_y]
    stats.seconds["hierarchy"] += time.perf_counter() - start
    tree = None
    for level in range(depth - 1, -1, -1):
        (xl, al, up_x), (yl, bl, up_y) = levels_x[level], levels_y[level]
        start = time.perf_counter()
        if tree is None:
            keys = np.arange(len(al) * len(bl), dtype=np.int64)
            warm = np.zeros(len(al)), np.zeros(len(bl))
        else:
            keys, warm = _prolong(tree, xl, yl, levels_x[level + 1][0], up_x, up_y)
        stats.seconds["candidates"] += time.perf_counter() - start
        tree = _solve_level(xl, yl, al, bl, code, p, tol, keys, warm, stats)
    return _certified_result(x, y, a, b, rows, cols, code, p, tol, scale, tree, stats), stats


def _cost_bound(x, y, code, p):
    """An upper bound of every cost: the joint bounding box's diameter to the power p."""
    both = np.concatenate([x, y])
    side = both.max(axis=0) - both.min(axis=0)
    diameter = side.sum() if code == CITYBLOCK_POW else math.sqrt(side @ side)
    return float(np.power(np.float64(diameter), p))


def _depths(n):
    """k-d tree depths of the levels, finest first: T = ceil(log2 n) (one point per cell),
    T - HALVINGS, ..., down to COARSE_DEPTH."""
    depths = [max(0, math.ceil(math.log2(n)))]
    while depths[-1] > COARSE_DEPTH:
        depths.append(max(COARSE_DEPTH, depths[-1] - HALVINGS))
    return depths


def _hierarchy(x, w, depths):
    """Levels finest first: (points, masses, cluster of each point at the next coarser level);
    clusters are the k-d tree's cells at ``depths`` (the first level is the cloud itself, in
    k-d order: nodes near in space are near in memory, which halves the simplex's cache
    misses), placed at the barycentre of their points. Also returns that order."""
    n = x.shape[0]
    labels = np.empty((depths[0] + 1, n), np.int64)
    kd_labels(x, labels)
    order = np.argsort(labels[depths[0]], kind="stable")
    x, w, labels = x[order], w[order], labels[:, order]
    levels = []
    own = np.arange(n)
    for k, t in enumerate(depths):
        lab = own if k == 0 else labels[t]
        if k == 0:
            pts, mass = x, w
        else:
            mass = np.bincount(lab, w)
            pts = np.stack([np.bincount(lab, w * x[:, d]) for d in range(x.shape[1])], axis=1) / mass[:, None]
        up = None
        if k + 1 < len(depths):
            up = np.empty(len(mass), np.int64)
            up[lab] = labels[depths[k + 1]]
        levels.append((np.ascontiguousarray(pts), mass, up))
    return levels, order


def _members(up, count):
    """CSR of the children of each coarse cluster: (indptr, members)."""
    order = np.argsort(up, kind="stable")
    return np.concatenate([[0], np.cumsum(np.bincount(up, minlength=count))]), order


def _prolong(tree, xl, yl, coarse_x, up_x, up_y):
    """Candidate arcs of a finer level (as keys i * m + j) and its warm duals from the coarse
    solution: the children of (I, J) for every coarse support arc (I', J) with I among the
    NEIGHBOUR_CELLS coarse clusters nearest to I' (the support's neighbourhood)."""
    parent, flow, pi, tcost = tree
    nc = coarse_x.shape[0]
    mc = parent.shape[0] - 1 - nc
    f0, g0 = pi[:nc][up_x], pi[nc:nc + mc][up_y]
    src, dst, _ = _support(parent, flow, nc, mc)
    k = min(NEIGHBOUR_CELLS, nc)
    if k > 1:
        near = scipy.spatial.cKDTree(coarse_x).query(coarse_x, k=k)[1].reshape(nc, k)
        by_src = np.argsort(src, kind="stable")
        deg = np.bincount(src, minlength=nc)
        first = np.concatenate([[0], np.cumsum(deg)])
        reps = deg[near].ravel()  # arcs of each neighbour, for every (I, neighbour) pair
        owner = np.repeat(np.repeat(np.arange(nc), k), reps)
        offset = np.arange(reps.sum()) - np.repeat(np.cumsum(reps) - reps, reps)
        picked = by_src[np.repeat(first[near.ravel()], reps) + offset]
        pairs = np.unique(np.concatenate([owner * mc + dst[picked], src * mc + dst]))
        src, dst = pairs // mc, pairs % mc
    x_ptr, x_members = _members(up_x, nc)
    y_ptr, y_members = _members(up_y, mc)
    size = int(np.sum(np.diff(x_ptr)[src] * np.diff(y_ptr)[dst]))
    rows, cols = np.empty(size, np.int64), np.empty(size, np.int64)
    _sk.product_arcs(src, dst, x_ptr, x_members, y_ptr, y_members, rows, cols)
    return rows * yl.shape[0] + cols, (f0, g0)


def _support(parent, flow, n, m):
    """(rows, cols, flows) of the real tree arcs carrying flow."""
    node = np.flatnonzero((parent >= 0) & (parent < n + m) & (flow > 0))
    node = node[node < n + m]
    src = np.where(node < n, node, parent[node])
    dst = np.where(node < n, parent[node], node) - n
    return src, dst, flow[node]


class _Pricer:
    """All-pairs pricing of one level by k-d cells of about 2**CELL_HALVINGS points, skipping
    the cells whose cost bound rules out a violating pair (linearised for squared Euclidean)."""

    def __init__(self, xl, yl, code, p, k):
        self.xl, self.yl, self.code, self.p, self.k = xl, yl, code, p, k
        self.x_order, self.x_ptr, self.x_sorted, self.x_lo, self.x_hi = kd_cells(xl, CELL_HALVINGS)
        self.y_order, self.y_ptr, self.y_sorted, self.y_lo, self.y_hi = kd_cells(yl, CELL_HALVINGS)
        self.y_sorted_t = np.ascontiguousarray(self.y_sorted.T)

    def violating(self, f, g, parent, flow, threshold):
        """Keys i * m + j of each row's k pairs of least reduced cost below ``threshold``, or None."""
        n, m = len(f), len(g)
        best_cols, best_rc = np.empty((n, self.k), np.int64), np.empty((n, self.k))
        counts = np.empty(n, np.int64)
        fs, gs = f[self.x_order], g[self.y_order]
        if self.code == SQEUCLIDEAN:
            x_slope, y_slope = self._slopes(parent, flow)
            _sk.price_cells_sq(self.x_sorted, self.x_ptr, (self.x_lo + self.x_hi) / 2, (self.x_hi - self.x_lo) / 2,
                               x_slope, self.y_sorted_t, self.y_ptr, (self.y_lo + self.y_hi) / 2,
                               (self.y_hi - self.y_lo) / 2, y_slope, fs, gs, threshold, best_cols, best_rc, counts)
        else:
            _sk.price_cells(self.x_sorted, self.x_ptr, self.x_lo, self.x_hi, self.y_sorted_t, self.y_ptr, self.y_lo,
                            self.y_hi, self.code, self.p, fs, gs, threshold, best_cols, best_rc, counts)
        if not counts.any():
            return None
        found = best_cols.ravel() >= 0
        return self.x_order[np.repeat(np.arange(n), self.k)[found]] * m + self.y_order[best_cols.ravel()[found]]

    def _slopes(self, parent, flow):
        """Per cell, twice the mean barycentric partner under the tree's plan (the gradient of
        |x|^2 - f at an optimum); any slope gives a valid bound, a good one a tight bound."""
        n, m = self.xl.shape[0], self.yl.shape[0]
        src, dst, mass = _support(parent, flow, n, m)
        out = []
        for pts, other, mine, theirs, order, ptr in ((self.xl, self.yl, src, dst, self.x_order, self.x_ptr),
                                                      (self.yl, self.xl, dst, src, self.y_order, self.y_ptr)):
            total = np.bincount(mine, mass, minlength=len(pts))
            partner = np.stack([np.bincount(mine, mass * other[theirs, d], minlength=len(pts))
                                for d in range(pts.shape[1])], axis=1)
            partner = np.where(total[:, None] > 0, partner / np.maximum(total, 1e-300)[:, None], pts)
            sums = np.add.reduceat(partner[order], ptr[:-1])
            out.append(np.ascontiguousarray(2.0 * sums / np.diff(ptr)[:, None]))
        return out


def _arc_list(xl, yl, code, p, keys, old=None):
    """CSR (keys, indptr, cols, costs) of the distinct arcs ``keys`` (i * m + j) joined to an
    ``old`` arc list (keys, costs); costs of the new ones from coordinates."""
    n, m = xl.shape[0], yl.shape[0]
    costs = np.empty(len(keys))
    _sk.arc_costs(xl, yl, code, p, keys // m, keys % m, costs)
    if old is not None:
        keys, costs = np.concatenate([old[0], keys]), np.concatenate([old[1], costs])
    order = np.argsort(keys, kind="stable")
    keys, costs = keys[order], costs[order]
    keep = np.concatenate([[True], keys[1:] != keys[:-1]])
    keys, costs = keys[keep], costs[keep]
    rows, cols = keys // m, keys % m
    indptr = np.concatenate([[0], np.cumsum(np.bincount(rows, minlength=n))])
    return keys, indptr, cols, costs


def _solve_level(xl, yl, al, bl, code, p, tol, keys, warm, stats):
    """Optimal tree of one level: simplex on the arc list from the artificial star, then rounds
    of all-pairs pricing that add each row's most violating pairs until there are none."""
    n, m = len(al), len(bl)
    start = time.perf_counter()
    pricer = _Pricer(xl, yl, code, p, min(NEW_ARCS_PER_ROW, m))
    keys, indptr, cols, costs = _arc_list(xl, yl, code, p, keys)
    f, g = warm[0].copy(), warm[1].copy()
    _sk.sparse_c_transform(indptr, cols, costs, f, g)
    span = costs.max() - costs.min()
    shift = 0.5 * (costs.max() - f.min() - g.min()) + 0.5 * span + tol + 1e-300
    size = n + m + 1
    parent, first_child, next_sib = (np.empty(size, np.int64) for _ in range(3))
    prev_sib, depth = np.empty(size, np.int64), np.empty(size, np.int64)
    flow, pi, tcost = np.empty(size), np.empty(size), np.empty(size)
    root = _sk.star_tree(al, bl, np.concatenate([f, g]) + shift, parent, flow, first_child, next_sib,
                         prev_sib, pi, depth, tcost)
    stats.seconds["candidates"] += time.perf_counter() - start
    cursor, pivots, rounds = 0, 0, 0
    mass = al.sum()
    while True:
        start = time.perf_counter()
        block = max(64, int(math.sqrt(len(cols))))
        for _ in range(64):
            _, done, cursor = _sk.simplex(indptr, cols, costs, n, root, parent, flow, first_child, next_sib,
                                          prev_sib, pi, depth, tcost, block, tol, -1, cursor)
            pivots += done
            if _sk.artificial_flow(root, first_child, next_sib, flow) <= ARTIFICIAL_FLOW_RTOL * mass:
                break
            _kernels.tree_flows(root, al, bl, parent, first_child, next_sib, flow)  # drop pivot rounding
            if _sk.artificial_flow(root, first_child, next_sib, flow) <= ARTIFICIAL_FLOW_RTOL * mass:
                break
            _sk.raise_artificial(root, shift * (ARTIFICIAL_GROWTH - 1.0), parent, first_child, next_sib,
                                 pi, depth, tcost)
            shift *= ARTIFICIAL_GROWTH
        stats.seconds["simplex"] += time.perf_counter() - start
        start = time.perf_counter()
        rounds += 1
        if rounds > MAX_ROUNDS or n * m == len(cols):
            break
        new = pricer.violating(pi[:n], pi[n:n + m], parent, flow, -tol)
        stats.seconds["pricing"] += time.perf_counter() - start
        if new is None:
            break
        start = time.perf_counter()
        keys, indptr, cols, costs = _arc_list(xl, yl, code, p, new, (keys, costs))
        stats.seconds["candidates"] += time.perf_counter() - start
    _kernels.tree_flows(root, al, bl, parent, first_child, next_sib, flow)
    stats.sizes.append((n, m))
    stats.arcs.append(len(cols))
    stats.pivots.append(pivots)
    stats.rounds.append(rounds)
    return parent, flow, pi, tcost


def _certified_result(x, y, a, b, rows, cols, code, p, tol, scale, tree, stats):
    """The OTResult of the finest tree, with potentials for zero-weight points and the dual
    violation over all n m pairs."""
    start = time.perf_counter()
    parent, flow, pi, tcost = tree
    n_sub, m_sub = len(rows), len(cols)
    n, m = len(a), len(b)
    f, g = np.zeros(n), np.zeros(m)
    f[rows], g[cols] = pi[:n_sub], pi[n_sub:n_sub + m_sub]
    if n_sub < n or m_sub < m:  # zero-weight points: the tightest feasible potentials
        dead_x, dead_y = np.flatnonzero(a == 0), np.flatnonzero(b == 0)
        f_dead, g_dead = np.empty(len(dead_x)), np.empty(len(dead_y))
        _sk.c_transform(x[dead_x], np.ascontiguousarray(y.T), code, p, g, b > 0, f_dead)
        f[dead_x] = f_dead
        _sk.c_transform(y[dead_y], np.ascontiguousarray(x.T), code, p, f, np.ones(n, np.bool_), g_dead)
        g[dead_y] = g_dead
    shift = (b @ g - a @ f) / (a.sum() + b.sum())  # normalise so that a.f == b.g
    f, g = f + shift, g - shift
    node = np.flatnonzero((parent[:n_sub + m_sub] < n_sub + m_sub) & (flow[:n_sub + m_sub] > 0))
    src = np.where(node < n_sub, node, parent[node])
    dst = np.where(node < n_sub, parent[node], node) - n_sub
    i, j = rows[src], cols[dst]
    order = np.lexsort((j, i))
    i, j, mass, arc_cost = i[order], j[order], flow[node][order], tcost[node][order]
    indptr = np.concatenate([[0], np.cumsum(np.bincount(i, minlength=n))])
    plan = scipy.sparse.csr_array((mass, j, indptr), shape=(n, m))
    value = float(mass @ arc_cost)
    dual_value = float(a @ f + b @ g)
    marginal_error = max(np.abs(np.bincount(i, mass, minlength=n) - a).sum(),
                         np.abs(np.bincount(j, mass, minlength=m) - b).sum())
    worst = np.empty(n)
    _sk.row_violations(x, np.ascontiguousarray(y.T), code, p, f, g, worst)
    violation = float(worst.max())
    stats.seconds["certificate"] += time.perf_counter() - start
    status, message = Status.OPTIMAL, "optimal"
    if violation > CERTIFICATE_RTOL * scale or not np.isfinite(value):
        status = Status.NUMERICAL_ERROR
        message = (f"not certified: the potentials violate f_i + g_j <= C_ij by {violation:.3g} "
                   f"(more than {CERTIFICATE_RTOL:g} of the cost bound {scale:.3g})")
    return OTResult(value=value, value_linear=value, plan=plan, f=f, g=g, status=status,
                    n_iter=int(sum(stats.pivots)), marginal_error=float(marginal_error),
                    max_dual_violation=violation, dual_value=dual_value, duality_gap=value - dual_value,
                    message=message)

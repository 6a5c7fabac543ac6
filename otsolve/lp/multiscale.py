"""Exact OT between large point clouds and grid histograms: a multiscale network simplex on
sparse arc sets, certified over all pairs (Schmitzer 2016).

One solver, two hierarchies: point clouds are clustered by balanced k-d trees (costs from
coordinates), grids by 2x2(x2) pixel pooling (costs from index offsets through a table, the
neighbourhood of a coarse arc by index offsets), made in ``_hierarchy``; the sparse
simplex, the pricing of all pairs and the certificate do not know which hierarchy made it.
"""
from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse

from .._costs import CITYBLOCK_POW, SQEUCLIDEAN, cost_code
from .._result import ConvergenceWarning, OTResult, Status
from .._validation import check_balanced, check_point_clouds, check_weights
from . import _kernels, _sparse_kernels as _sk
from ._hierarchy import cloud_levels, grid_levels
from .network_simplex import REDUCED_COST_TOL

NEW_ARCS_PER_ROW = 10   # per row and pricing round, the most violating pairs added to the arc list
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


def exact_multiscale(x, y, a=None, b=None, *, p=2, metric="euclidean", max_iter=None) -> OTResult:
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
    max_iter : int, optional
        Budget of simplex pivots over all levels (unlimited when omitted). When it is spent
        the status is ``max_iter``, the message names the level, and the plan is feasible:
        the finest level's tree if it was reached without artificial flow, else the north-west
        corner rule over the finest level's order, with potentials feasible for it.

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
    return solve_multiscale(x, y, a, b, p=p, metric=metric, max_iter=max_iter)[0]


def solve_multiscale(x, y, a=None, b=None, *, p=2, metric="euclidean", max_iter=None):
    """:func:`exact_multiscale` returning ``(OTResult, MultiscaleStats)``."""
    x, y = check_point_clouds(x, y)
    n, m = x.shape[0], y.shape[0]
    a = check_weights(a, n, "a", dim_name="points in x")
    b = check_balanced(a, check_weights(b, m, "b", dim_name="points in y"))
    code, p = cost_code(metric, p)
    max_iter = _check_budget(max_iter)
    with np.errstate(over="ignore"):
        scale = _cost_bound(x, y, code, p)
    if not math.isfinite(scale):
        raise ValueError(f"the costs {metric}(x, y) ** {p:g} of these points overflow float64; rescale x and y "
                         "(the optimal plan does not change when both are scaled alike)")
    both = np.concatenate([x, y])
    centre = (both.min(axis=0) + both.max(axis=0)) / 2  # costs are shift-invariant; bounds want small |x|
    x, y = x - centre, y - centre
    stats = MultiscaleStats()
    start = time.perf_counter()
    levels, rows, cols = cloud_levels(x, y, a, b, code, p)
    stats.seconds["hierarchy"] += time.perf_counter() - start
    return _solve_levels(levels, x, y, a, b, rows, cols, code, p, scale, max_iter, stats), stats


def solve_multiscale_grid(a, b, shape, spacing, *, p=2, max_iter=None):
    """The multiscale solve of two histograms ``a``, ``b`` (unit mass, C order) on a grid of
    ``shape`` with per-axis ``spacing`` (checked by the caller), Euclidean ground distance to
    the power p: ``(OTResult, MultiscaleStats)``. The hierarchy pools 2x2(x2) pixels; costs
    come from index offsets."""
    code, p = cost_code("euclidean", p)
    max_iter = _check_budget(max_iter)
    shape, step = tuple(shape), np.asarray(spacing, float)
    index = np.stack(np.unravel_index(np.arange(math.prod(shape)), shape), axis=1)
    centre = (np.asarray(shape) - 1) / 2
    z = (index - centre) * step  # pixel centres, centred as the clouds are
    scale = _cost_bound(z, z, code, p)
    stats = MultiscaleStats()
    start = time.perf_counter()
    levels, rows, cols = grid_levels(index, a, b, shape, step, code, p)
    stats.seconds["hierarchy"] += time.perf_counter() - start
    lengths = [np.ascontiguousarray((np.arange(side) * h) ** 2) for side, h in zip(shape, step)]
    return _solve_levels(levels, z, z, a, b, rows, cols, code, p, scale, max_iter, stats, (shape, lengths)), stats


def _check_budget(max_iter):
    if max_iter is None:
        return -1
    if isinstance(max_iter, bool) or not isinstance(max_iter, (int, np.integer)) or max_iter < 0:
        raise ValueError(f"max_iter must be a non-negative integer or None; got {max_iter!r}")
    return int(max_iter)


def _cost_bound(x, y, code, p):
    """An upper bound of every cost: the joint bounding box's diameter to the power p."""
    both = np.concatenate([x, y])
    side = both.max(axis=0) - both.min(axis=0)
    diameter = side.sum() if code == CITYBLOCK_POW else math.sqrt(side @ side)
    return float(np.power(np.float64(diameter), p))


# -- hierarchies -------------------------------------------------------------------------------

def _members(up, count):
    """CSR of the children of each coarse cluster: (indptr, members)."""
    order = np.argsort(up, kind="stable")
    return np.concatenate([[0], np.cumsum(np.bincount(up, minlength=count))]), order


# -- the solve ---------------------------------------------------------------------------------

def _solve_levels(levels, x, y, a, b, rows, cols, code, p, scale, max_iter, stats, grid=None):
    """Coarsest to finest, each level warm-started from the one above; the certified result.
    ``max_iter`` (-1: none) is a pivot budget over all levels; ``grid`` (shape, squared lengths
    per axis) when x = y are the pixels of a grid."""
    tol = REDUCED_COST_TOL * scale
    tree, budget = None, max_iter
    for k in range(len(levels) - 1, -1, -1):
        level = levels[k]
        start = time.perf_counter()
        if tree is None:
            keys = np.arange(len(level.a) * len(level.b), dtype=np.int64)
            warm = np.zeros(len(level.a)), np.zeros(len(level.b))
        else:
            keys, warm = _prolong(tree, level, levels[k + 1])
        stats.seconds["candidates"] += time.perf_counter() - start
        tree, finished = _solve_level(level, code, p, tol, keys, warm, stats, budget)
        if budget >= 0:
            budget -= stats.pivots[-1]
        if not finished:
            return _stopped_result(levels, k, tree, x, y, a, b, rows, cols, code, p, scale, max_iter, stats, grid)
    n, m, pi = len(rows), len(cols), tree[2]
    return _certified_result(x, y, a, b, rows, cols, code, p, scale, _support(tree, n, m),
                             pi[:n], pi[n:n + m], stats, grid=grid)


def _prolong(tree, fine, coarse):
    """Candidate arcs of a finer level (as keys i * m + j) and its warm duals from the coarse
    solution: the children of the coarse plan's support, widened by the coarse level's
    neighbourhood."""
    pi = tree[2]
    nc, mc = len(coarse.a), len(coarse.b)
    f0, g0 = pi[:nc][fine.up_x], pi[nc:nc + mc][fine.up_y]
    src, dst = coarse.widen(*_support(tree, nc, mc)[:2])
    x_ptr, x_members = _members(fine.up_x, nc)
    y_ptr, y_members = _members(fine.up_y, mc)
    size = int(np.sum(np.diff(x_ptr)[src] * np.diff(y_ptr)[dst]))
    rows, cols = np.empty(size, np.int64), np.empty(size, np.int64)
    _sk.product_arcs(src, dst, x_ptr, x_members, y_ptr, y_members, rows, cols)
    return rows * len(fine.b) + cols, (f0, g0)


def _support(tree, n, m):
    """(rows, cols, flows, costs) of the real arcs carrying flow in a tree (parent, flow, pi, tcost)."""
    parent, flow, _, tcost = tree
    node = np.flatnonzero((parent[:n + m] >= 0) & (parent[:n + m] < n + m) & (flow[:n + m] > 0))
    src = np.where(node < n, node, parent[node])
    dst = np.where(node < n, parent[node], node) - n
    return src, dst, flow[node], tcost[node]


class _Pricer:
    """All-pairs pricing of one level by the level's cells (``_hierarchy.CELL_HALVINGS``), skipping
    the cells whose cost bound rules out a violating pair (linearised for squared Euclidean)."""

    def __init__(self, xl, yl, code, p, k, cells):
        self.xl, self.yl, self.code, self.p, self.k = xl, yl, code, p, k
        (self.x_order, self.x_ptr, self.x_sorted, self.x_lo, self.x_hi), \
            (self.y_order, self.y_ptr, self.y_sorted, self.y_lo, self.y_hi) = cells
        self.y_sorted_t = np.ascontiguousarray(self.y_sorted.T)

    def violating(self, f, g, tree, threshold):
        """Keys i * m + j of each row's k pairs of least reduced cost below ``threshold``, or None."""
        n, m = len(f), len(g)
        best_cols, best_rc = np.empty((n, self.k), np.int64), np.empty((n, self.k))
        counts = np.empty(n, np.int64)
        fs, gs = f[self.x_order], g[self.y_order]
        if self.code == SQEUCLIDEAN:
            x_slope, y_slope = self._slopes(tree)
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

    def _slopes(self, tree):
        """Per cell, twice the mean barycentric partner under the tree's plan (the gradient of
        |x|^2 - f at an optimum); any slope gives a valid bound, a good one a tight bound."""
        n, m = self.xl.shape[0], self.yl.shape[0]
        src, dst, mass, _ = _support(tree, n, m)
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


def _arc_list(costs_of, n, m, keys, old=None):
    """CSR (keys, indptr, cols, costs) of the distinct arcs ``keys`` (i * m + j) joined to an
    ``old`` arc list (keys, costs); costs of the new ones from ``costs_of(rows, cols)``."""
    costs = costs_of(keys // m, keys % m)
    if old is not None:
        keys, costs = np.concatenate([old[0], keys]), np.concatenate([old[1], costs])
    order = np.argsort(keys, kind="stable")
    keys, costs = keys[order], costs[order]
    keep = np.concatenate([[True], keys[1:] != keys[:-1]])
    keys, costs = keys[keep], costs[keep]
    rows, cols = keys // m, keys % m
    indptr = np.concatenate([[0], np.cumsum(np.bincount(rows, minlength=n))])
    return keys, indptr, cols, costs


def _solve_level(level, code, p, tol, keys, warm, stats, budget):
    """Tree of one level: simplex on the arc list from the artificial star, then rounds of
    all-pairs pricing that add each row's most violating pairs until there are none. Returns
    (tree, finished); finished is False when the pivot ``budget`` (-1: none) ran out first."""
    al, bl = level.a, level.b
    n, m = len(al), len(bl)
    start = time.perf_counter()
    pricer = _Pricer(level.x, level.y, code, p, min(NEW_ARCS_PER_ROW, m), level.cells())
    keys, indptr, cols, costs = _arc_list(level.costs, n, m, keys)
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
    cursor, pivots, rounds, finished = 0, 0, 0, True
    mass = al.sum()
    while finished:
        start = time.perf_counter()
        block = max(64, int(math.sqrt(len(cols))))
        for _ in range(64):
            left = budget - pivots if budget >= 0 else -1
            status, done, cursor = _sk.simplex(indptr, cols, costs, n, root, parent, flow, first_child, next_sib,
                                               prev_sib, pi, depth, tcost, block, tol, left, cursor)
            pivots += done
            if status == _sk.MAX_ITER:
                finished = False
                break
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
        if not finished or rounds > MAX_ROUNDS or n * m == len(cols):
            break
        new = pricer.violating(pi[:n], pi[n:n + m], (parent, flow, pi, tcost), -tol)
        stats.seconds["pricing"] += time.perf_counter() - start
        if new is None:
            break
        start = time.perf_counter()
        keys, indptr, cols, costs = _arc_list(level.costs, n, m, new, (keys, costs))
        stats.seconds["candidates"] += time.perf_counter() - start
    _kernels.tree_flows(root, al, bl, parent, first_child, next_sib, flow)
    stats.sizes.append((n, m))
    stats.arcs.append(len(cols))
    stats.pivots.append(pivots)
    stats.rounds.append(rounds)
    return (parent, flow, pi, tcost), finished


def _stopped_result(levels, k, tree, x, y, a, b, rows, cols, code, p, scale, max_iter, stats, grid):
    """The result of a solve whose pivot budget ran out at level k: a feasible plan (the finest
    tree's when it carries no artificial flow, else the north-west corner rule over the finest
    level's order, with the tightest f for g = 0), status MAX_ITER."""
    parent, flow, pi, _ = tree
    finest = levels[0]
    n, m = len(finest.a), len(finest.b)
    artificial = flow[:n + m][parent[:n + m] == n + m].sum()
    where = (f"the pivot budget max_iter={max_iter} ran out at level {k} of {len(levels)} (0 is the finest; "
             f"{len(levels[k].a)} x {len(levels[k].b)} clusters)")
    if k == 0 and artificial <= ARTIFICIAL_FLOW_RTOL * finest.a.sum():
        arcs, f, g = _support(tree, n, m), pi[:n], pi[n:n + m]
        where += "; the plan is the last feasible tree's, not optimal"
    else:
        src, dst, mass = (np.empty(n + m - 1, dt) for dt in (np.int64, np.int64, float))
        _sk.northwest_plan(finest.a, finest.b, src, dst, mass)
        keep = mass > 0
        src, dst, mass = src[keep], dst[keep], mass[keep]
        arcs = src, dst, mass, finest.costs(src, dst)
        f, g = np.empty(n), np.zeros(m)
        _sk.c_transform(x[rows], np.ascontiguousarray(y[cols].T), code, p, g, np.ones(m, np.bool_), f)
        where += "; the plan is the north-west corner rule's on the finest level (feasible, not optimal)"
    return _certified_result(x, y, a, b, rows, cols, code, p, scale, arcs, f, g, stats, where, grid)


def _c_transform(g, alive, x, y, code, p, grid, which=None):
    """min over alive j of C(x_i, y_j) - g_j for the points x[which] (all when None): over all
    pairs from coordinates, or on a grid with squared Euclidean costs one pass per axis
    (``_sk.min_plus_lines``), which is the same minimum in O(pixels x side)."""
    if grid is None or code != SQEUCLIDEAN:
        points = x if which is None else x[which]
        out = np.empty(len(points))
        _sk.c_transform(points, np.ascontiguousarray(y.T), code, p, g, alive, out)
        return out
    shape, lengths = grid
    h = np.where(alive, -g, np.inf).reshape(shape)
    for axis, length in enumerate(lengths):
        lines = np.ascontiguousarray(np.moveaxis(h, axis, -1))
        out = np.empty_like(lines)
        _sk.min_plus_lines(lines.reshape(-1, lines.shape[-1]), length, out.reshape(-1, lines.shape[-1]))
        h = np.moveaxis(out, -1, axis)
    return h.ravel() if which is None else h.ravel()[which]


def _certified_result(x, y, a, b, rows, cols, code, p, scale, arcs, f_sub, g_sub, stats, stopped=None, grid=None):
    """The OTResult of a plan on the finest level (arcs: its rows, cols, flows, costs) and its
    potentials, with potentials for zero-weight points and the dual violation over all n m
    pairs; status MAX_ITER with the message ``stopped`` when the pivot budget ran out."""
    start = time.perf_counter()
    n, m = len(a), len(b)
    f, g = np.zeros(n), np.zeros(m)
    f[rows], g[cols] = f_sub, g_sub
    if len(rows) < n or len(cols) < m:  # zero-weight points: the tightest feasible potentials
        dead_x, dead_y = np.flatnonzero(a == 0), np.flatnonzero(b == 0)
        f[dead_x] = _c_transform(g, b > 0, x, y, code, p, grid, dead_x)
        g[dead_y] = _c_transform(f, np.ones(n, np.bool_), y, x, code, p, grid, dead_y)
    shift = (b @ g - a @ f) / (a.sum() + b.sum())  # normalise so that a.f == b.g
    f, g = f + shift, g - shift
    src, dst, mass, arc_cost = arcs
    i, j = rows[src], cols[dst]
    order = np.lexsort((j, i))
    i, j, mass, arc_cost = i[order], j[order], mass[order], arc_cost[order]
    indptr = np.concatenate([[0], np.cumsum(np.bincount(i, minlength=n))])
    plan = scipy.sparse.csr_array((mass, j, indptr), shape=(n, m))
    value = float(mass @ arc_cost)
    dual_value = float(a @ f + b @ g)
    marginal_error = max(np.abs(np.bincount(i, mass, minlength=n) - a).sum(),
                         np.abs(np.bincount(j, mass, minlength=m) - b).sum())
    # f_i - min_j (C_ij - g_j) is row i's largest violation of f_i + g_j <= C_ij over all j
    violation = max(0.0, float(np.max(f - _c_transform(g, np.ones(m, np.bool_), x, y, code, p, grid))))
    stats.seconds["certificate"] += time.perf_counter() - start
    status, message = Status.OPTIMAL, "optimal"
    if stopped is not None:
        status, message = Status.MAX_ITER, stopped
    elif violation > CERTIFICATE_RTOL * scale or not np.isfinite(value):
        status = Status.NUMERICAL_ERROR
        message = (f"not certified: the potentials violate f_i + g_j <= C_ij by {violation:.3g} "
                   f"(more than {CERTIFICATE_RTOL:g} of the cost bound {scale:.3g})")
    if status != Status.OPTIMAL:
        warnings.warn(message, ConvergenceWarning, stacklevel=2)
    return OTResult(value=value, value_linear=value, plan=plan, f=f, g=g, status=status,
                    n_iter=int(sum(stats.pivots)), marginal_error=float(marginal_error),
                    max_dual_violation=violation, dual_value=dual_value, duality_gap=value - dual_value,
                    message=message)

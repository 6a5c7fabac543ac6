"""Numba kernels of the multiscale exact solver (Schmitzer 2016).

A network simplex on a sparse arc list: the candidate arcs of row i are ``cols[indptr[i]:
indptr[i + 1]]`` with costs ``costs[...]`` (CSR). The spanning tree has the layout of
``_kernels`` (nodes 0..n-1 sources, n..n+m-1 sinks) plus an artificial root n + m, and each
node keeps the cost of its arc to the parent in ``tcost``, so that no cost source is needed
and arcs can be added between solves while the tree stays a feasible basis. Also: the balanced
k-d tree of a cloud (the hierarchy), the pricing of all n m pairs by cells (bounds skip the cells
that cannot hold a violating pair) and the certificate over all pairs, in parallel.
"""

import math

import numpy as np
from numba import njit, prange

from .._cells import gap_cost
from .._costs import SQEUCLIDEAN, pair_cost, point_costs
from ._kernels import _link, _unlink, push_cycle

OPTIMAL, MAX_ITER = 0, 1
CHUNK = 512  # columns per on-the-fly cost run in the all-pairs passes (fits L1 with its costs)


@njit(cache=True)
def star_tree(a, b, art, parent, flow, first_child, next_sib, prev_sib, pi, depth, tcost):
    """Every node hangs from the root n + m by an artificial arc of cost art[w] carrying its
    whole weight (strongly feasible: all flows positive); pi[w] = art[w]."""
    n, m = a.shape[0], b.shape[0]
    root = n + m
    first_child[:] = -1
    next_sib[:] = -1
    prev_sib[:] = -1
    parent[root], flow[root], pi[root], depth[root], tcost[root] = -1, 0.0, 0.0, 0, 0.0
    for w in range(n + m):
        _link(w, root, parent, first_child, next_sib, prev_sib)
        flow[w] = a[w] if w < n else b[w - n]
        pi[w] = art[w]
        tcost[w] = art[w]
        depth[w] = 1
    return root


@njit(cache=True)
def relabel(top, parent, first_child, next_sib, pi, depth, tcost):
    """pi[w] = tcost[w] - pi[parent[w]] and depths over the subtree of ``top`` (in preorder)."""
    w = top
    while True:
        p = parent[w]
        pi[w] = tcost[w] - pi[p]
        depth[w] = depth[p] + 1
        if first_child[w] >= 0:
            w = first_child[w]
            continue
        while w != top and next_sib[w] < 0:
            w = parent[w]
        if w == top:
            return
        w = next_sib[w]


@njit(cache=True)
def raise_artificial(root, step, parent, first_child, next_sib, pi, depth, tcost):
    """Add ``step`` to the cost of every artificial arc still in the tree (big-M grows) and
    recompute the potentials; the basis stays feasible."""
    w = first_child[root]
    while w >= 0:
        tcost[w] += step
        relabel(w, parent, first_child, next_sib, pi, depth, tcost)
        w = next_sib[w]


@njit(cache=True)
def artificial_flow(root, first_child, next_sib, flow):
    """Total flow on the artificial arcs of the tree."""
    s = 0.0
    w = first_child[root]
    while w >= 0:
        s += flow[w]
        w = next_sib[w]
    return s


@njit(cache=True)
def _price_block(indptr, cols, costs, pi, n, start_row, block, tol):
    """Block search over the arc list from row ``start_row`` cyclically: (row, arc) of most
    negative reduced cost C_ij - f_i - g_j < -tol in the first block of about ``block``
    arcs that has one, or (-1, -1)."""
    best, best_arc, best_row = -tol, -1, -1
    scanned = 0
    i = start_row
    for _ in range(n):
        fi = pi[i]
        for k in range(indptr[i], indptr[i + 1]):
            rc = costs[k] - fi - pi[n + cols[k]]
            if rc < best:
                best, best_arc, best_row = rc, k, i
        scanned += indptr[i + 1] - indptr[i]
        i = i + 1 if i + 1 < n else 0
        if scanned >= block:
            if best_arc >= 0:
                return best_row, best_arc
            scanned = 0
    return best_row, best_arc


@njit(cache=True)
def simplex(indptr, cols, costs, n, root, parent, flow, first_child, next_sib, prev_sib, pi, depth,
            tcost, block, tol, max_iter, cursor):
    """Pivot on the arc list until no arc prices out (OPTIMAL) or ``max_iter`` pivots
    (MAX_ITER, if >= 0), Cunningham's leaving rule as in ``_kernels.network_simplex``.
    Returns (status, pivots, cursor); ``cursor`` lets a later call resume the cyclic scan."""
    pivots = 0
    while True:
        u, arc = _price_block(indptr, cols, costs, pi, n, cursor, block, tol)
        if arc < 0:
            return OPTIMAL, pivots, cursor
        if pivots == max_iter:
            return MAX_ITER, pivots, cursor
        cursor = u + 1 if u + 1 < n else 0
        v = n + cols[arc]
        delta, out, side = push_cycle(u, v, n, parent, depth, flow)
        q, p = (u, v) if side == 1 else (v, u)
        # Re-hang the path q -> out below p, reversing its arcs; each arc keeps flow and cost.
        prev, w, carried, carried_cost = p, q, delta, costs[arc]
        while True:
            nxt = parent[w]
            old, old_cost = flow[w], tcost[w]
            _unlink(w, parent, first_child, next_sib, prev_sib)
            _link(w, prev, parent, first_child, next_sib, prev_sib)
            flow[w], tcost[w] = carried, carried_cost
            if w == out:
                break
            carried, carried_cost, prev, w = old, old_cost, w, nxt
        relabel(q, parent, first_child, next_sib, pi, depth, tcost)
        pivots += 1


@njit(cache=True, parallel=True)
def c_transform(x, yT, code, p, g, col_alive, out):
    """out[i] = min_{j alive} C_ij - g_j (the tightest f feasible for g)."""
    n, m = x.shape[0], yT.shape[1]
    for i in prange(n):
        buf = np.empty(CHUNK)
        best = np.inf
        for j0 in range(0, m, CHUNK):
            kk = min(CHUNK, m - j0)
            c = point_costs(x, i, yT, j0, kk, code, p, buf)
            for jj in range(kk):
                if col_alive[j0 + jj]:
                    best = min(best, c[jj] - g[j0 + jj])
        out[i] = best


@njit(cache=True, parallel=True)
def min_plus_lines(values, lengths, out):
    """out[r, i] = min_j lengths[|i - j|] + values[r, j]: one axis of the c-transform on a grid,
    whose squared Euclidean cost is a sum of one such term per axis (so the transform over all
    pairs is one pass per axis, O(pixels x side) instead of O(pixels^2))."""
    rows, side = values.shape
    for r in prange(rows):
        for i in range(side):
            best = np.inf
            for j in range(i + 1):
                best = min(best, lengths[i - j] + values[r, j])
            for j in range(i + 1, side):
                best = min(best, lengths[j - i] + values[r, j])
            out[r, i] = best


@njit(cache=True)
def arc_costs(x, y, code, p, rows, cols, out):
    """out[k] = C[rows[k], cols[k]] from coordinates (the same sums as ``point_costs``)."""
    for k in range(rows.shape[0]):
        out[k] = pair_cost(x, rows[k], y, cols[k], code, p)


@njit(cache=True)
def grid_arc_costs(ix, iy, table, code, p, rows, cols, out):
    """out[k] = |z_i - z_j| ** p for the grid cells ix[rows[k]], iy[cols[k]] (integer indices):
    the squared lengths table[axis, |offset|] summed over the axes, then as ``pair_cost``."""
    for k in range(rows.shape[0]):
        i, j = rows[k], cols[k]
        s = 0.0
        for dim in range(ix.shape[1]):
            s += table[dim, abs(ix[i, dim] - iy[j, dim])]
        if code != SQEUCLIDEAN:
            s = math.sqrt(s)
            if p != 1.0:
                s = s ** p
        out[k] = s


@njit(cache=True)
def northwest_plan(a, b, rows, cols, flows):
    """The north-west corner rule's plan (n + m - 1 arcs, some possibly of zero flow) in the
    given order of a and b: a feasible plan; the last row and column take what is left."""
    n, m = a.shape[0], b.shape[0]
    i, j = 0, 0
    ra, rb = a[0], b[0]
    for t in range(n + m - 1):
        x = ra if j == m - 1 else (rb if i == n - 1 else min(ra, rb))
        rows[t], cols[t], flows[t] = i, j, max(x, 0.0)
        if t == n + m - 2:
            break
        if j == m - 1 or (i < n - 1 and ra < rb):
            rb -= x
            i += 1
            ra = a[i]
        else:
            ra -= x
            j += 1
            rb = b[j]


@njit(cache=True)
def sparse_c_transform(indptr, cols, costs, f, g):
    """On the arc list: g_j = min_i C_ij - f_i (columns without arcs keep g_j), then
    f_i = min_j C_ij - g_j; the potentials become feasible and tight on the arcs."""
    m = g.shape[0]
    best = np.full(m, np.inf)
    for i in range(f.shape[0]):
        for k in range(indptr[i], indptr[i + 1]):
            best[cols[k]] = min(best[cols[k]], costs[k] - f[i])
    for j in range(m):
        if best[j] < np.inf:
            g[j] = best[j]
    for i in range(f.shape[0]):
        b = np.inf
        for k in range(indptr[i], indptr[i + 1]):
            b = min(b, costs[k] - g[cols[k]])
        if b < np.inf:
            f[i] = b


@njit(cache=True)
def product_arcs(coarse_rows, coarse_cols, x_ptr, x_members, y_ptr, y_members, rows, cols):
    """All pairs (child of I, child of J) for the coarse arcs (I, J), written to rows/cols
    (sized by the caller); children of cluster I are x_members[x_ptr[I]:x_ptr[I + 1]]."""
    t = 0
    for k in range(coarse_rows.shape[0]):
        ci, cj = coarse_rows[k], coarse_cols[k]
        for s in range(x_ptr[ci], x_ptr[ci + 1]):
            for r in range(y_ptr[cj], y_ptr[cj + 1]):
                rows[t] = x_members[s]
                cols[t] = y_members[r]
                t += 1
    return t


@njit(cache=True, inline="always")
def _keep_best(cols, rcs, held, j, rc):
    """Insert (j, rc) into the ascending list rcs[:held] of at most len(rcs) entries; new held."""
    k = rcs.shape[0]
    if k == 0 or (held == k and rc >= rcs[k - 1]):
        return held
    t = min(held, k - 1)
    while t > 0 and rcs[t - 1] > rc:
        rcs[t], cols[t] = rcs[t - 1], cols[t - 1]
        t -= 1
    rcs[t], cols[t] = rc, j
    return min(held + 1, k)


@njit(cache=True, parallel=True)
def price_cells(x, x_ptr, x_lo, x_hi, yT, y_ptr, y_lo, y_hi, code, p, f, g, threshold, best_cols, best_rc,
                counts):
    """Over all pairs, rc_ij = C_ij - f_i - g_j from coordinates: counts[i] = #{j: rc_ij <
    threshold}, the k = best_cols.shape[1] smallest of those in best_cols[i] / best_rc[i]
    (ascending, -1 padded). x, f and y (as yT), g are sorted by cell (cell c holds rows
    x_ptr[c]..x_ptr[c + 1] - 1, inside the box x_lo[c]..x_hi[c]); a pair of cells, then a row
    and a cell, is skipped when the cost bound of the boxes minus the largest potentials is not
    below ``threshold``: no pair in it is."""
    ncx, ncy, d = x_ptr.shape[0] - 1, y_ptr.shape[0] - 1, x.shape[1]
    k = best_cols.shape[1]
    f_max, g_max = np.full(ncx, -np.inf), np.full(ncy, -np.inf)
    widest = 1
    for c in range(ncx):
        for i in range(x_ptr[c], x_ptr[c + 1]):
            f_max[c] = max(f_max[c], f[i])
    for e in range(ncy):
        widest = max(widest, y_ptr[e + 1] - y_ptr[e])
        for j in range(y_ptr[e], y_ptr[e + 1]):
            g_max[e] = max(g_max[e], g[j])
    for c in prange(ncx):
        buf, gaps = np.empty(widest), np.empty(d)
        held = np.zeros(x_ptr[c + 1] - x_ptr[c], np.int64)
        for i in range(x_ptr[c], x_ptr[c + 1]):
            counts[i] = 0
            for t in range(k):
                best_cols[i, t] = -1
                best_rc[i, t] = np.inf
        for e in range(ncy):
            for dim in range(d):
                gaps[dim] = max(x_lo[c, dim] - y_hi[e, dim], y_lo[e, dim] - x_hi[c, dim], 0.0)
            if gap_cost(gaps, code, p) - f_max[c] - g_max[e] >= threshold:
                continue
            j0, kk = y_ptr[e], y_ptr[e + 1] - y_ptr[e]
            for i in range(x_ptr[c], x_ptr[c + 1]):
                fi = f[i]
                for dim in range(d):
                    gaps[dim] = max(x[i, dim] - y_hi[e, dim], y_lo[e, dim] - x[i, dim], 0.0)
                if gap_cost(gaps, code, p) - fi - g_max[e] >= threshold:
                    continue
                cost = point_costs(x, i, yT, j0, kk, code, p, buf)
                h = held[i - x_ptr[c]]
                for jj in range(kk):
                    rc = cost[jj] - fi - g[j0 + jj]
                    if rc < threshold:
                        counts[i] += 1
                        h = _keep_best(best_cols[i], best_rc[i], h, j0 + jj, rc)
                held[i - x_ptr[c]] = h


@njit(cache=True, parallel=True)
def price_cells_sq(x, x_ptr, x_mid, x_half, x_slope, yT, y_ptr, y_mid, y_half, y_slope, f, g, threshold,
                   best_cols, best_rc, counts):
    """:func:`price_cells` for the squared Euclidean cost, with bounds linearised per cell:
    rc_ij = u_i + v_j - 2 <x_i, y_j> with u = |x|^2 - f, v = |y|^2 - g; for slopes s (of u on
    an x cell) and w (of v on a y cell) near the gradients 2 T(x) and 2 T^-1(y), the bound
    min(u - <s, dx>) + min(v - <w, dy>) - 2 <x_mid, y_mid> - |s - 2 y_mid|.x_half
    - |w - 2 x_mid|.y_half - 2 x_half.y_half is tight near the support (dx, dy: offsets from
    the box centres). Costs of the pairs not skipped are computed as in ``point_costs``."""
    n, d = x.shape
    m = yT.shape[1]
    ncx, ncy = x_ptr.shape[0] - 1, y_ptr.shape[0] - 1
    k = best_cols.shape[1]
    u, v = np.empty(n), np.empty(m)
    u_lo, v_lo = np.full(ncx, np.inf), np.full(ncy, np.inf)
    widest = 1
    for c in range(ncx):
        for i in range(x_ptr[c], x_ptr[c + 1]):
            s, lin = 0.0, 0.0
            for dim in range(d):
                s += x[i, dim] * x[i, dim]
                lin += x_slope[c, dim] * (x[i, dim] - x_mid[c, dim])
            u[i] = s - f[i]
            u_lo[c] = min(u_lo[c], u[i] - lin)
    for e in range(ncy):
        widest = max(widest, y_ptr[e + 1] - y_ptr[e])
        for j in range(y_ptr[e], y_ptr[e + 1]):
            s, lin = 0.0, 0.0
            for dim in range(d):
                s += yT[dim, j] * yT[dim, j]
                lin += y_slope[e, dim] * (yT[dim, j] - y_mid[e, dim])
            v[j] = s - g[j]
            v_lo[e] = min(v_lo[e], v[j] - lin)
    for c in prange(ncx):
        buf = np.empty(widest)
        held = np.zeros(x_ptr[c + 1] - x_ptr[c], np.int64)
        for i in range(x_ptr[c], x_ptr[c + 1]):
            counts[i] = 0
            for t in range(k):
                best_cols[i, t] = -1
                best_rc[i, t] = np.inf
        for e in range(ncy):
            bound = u_lo[c] + v_lo[e]
            for dim in range(d):
                bound -= (2.0 * x_mid[c, dim] * y_mid[e, dim]
                          + abs(x_slope[c, dim] - 2.0 * y_mid[e, dim]) * x_half[c, dim]
                          + abs(y_slope[e, dim] - 2.0 * x_mid[c, dim]) * y_half[e, dim]
                          + 2.0 * x_half[c, dim] * y_half[e, dim])
            if bound >= threshold:
                continue
            j0, kk = y_ptr[e], y_ptr[e + 1] - y_ptr[e]
            for i in range(x_ptr[c], x_ptr[c + 1]):
                bound = u[i] + v_lo[e]
                for dim in range(d):
                    bound -= (2.0 * x[i, dim] * y_mid[e, dim]
                              + abs(y_slope[e, dim] - 2.0 * x[i, dim]) * y_half[e, dim])
                if bound >= threshold:
                    continue
                fi = f[i]
                cost = point_costs(x, i, yT, j0, kk, SQEUCLIDEAN, 2.0, buf)
                h = held[i - x_ptr[c]]
                for jj in range(kk):
                    rc = cost[jj] - fi - g[j0 + jj]
                    if rc < threshold:
                        counts[i] += 1
                        h = _keep_best(best_cols[i], best_rc[i], h, j0 + jj, rc)
                held[i - x_ptr[c]] = h

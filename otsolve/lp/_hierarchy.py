"""Hierarchies of the multiscale exact solver: the levels of two point clouds (balanced k-d
trees, costs from coordinates) or of two histograms on one grid (2x2(x2) pixel pooling, costs
from index offsets). Each level is a :class:`Level`; the solver in ``multiscale`` does not know
which hierarchy made it."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
import scipy.spatial

from .._cells import kd_cells, kd_labels
from . import _sparse_kernels as _sk

COARSE_DEPTH = 8        # the coarsest level has 2**8 = 256 clusters per cloud: solved on all pairs
HALVINGS = 2            # k-d tree depths per level: each level has 4x fewer clusters than the next
NEIGHBOUR_CELLS = 1     # a coarse arc (I', J) also proposes (I, J) for the k clusters I nearest
                        # to I'; k = 1 (off) measured fastest: more arcs up front cost the
                        # artificial start more pivots than the pricing rounds they save
GRID_NEIGHBOUR_RADIUS = 0  # grids: a coarse arc (I', J) also proposes (I, J) for |I - I'|_inf <= r
                           # (index offsets); r = 1 measured 1.4x slower on 128x128 white noise (4x
                           # the arcs: one pricing round a level, but 1.45x the pivots)
CELL_HALVINGS = 4       # pricing cells (k-d cells, grid blocks) hold about 2**4 = 16 points


@dataclass
class Level:
    """One level of a hierarchy: cluster positions and masses of both sides, each cluster's
    cluster at the next coarser level (None at the coarsest), the arc costs, the pricing cells
    and the neighbourhood a support arc of this level proposes at the next finer one."""
    x: np.ndarray
    y: np.ndarray
    a: np.ndarray
    b: np.ndarray
    up_x: np.ndarray | None
    up_y: np.ndarray | None
    costs: Callable      # (rows, cols) -> costs of those arcs
    cells: Callable      # () -> pricing cells of x and of y, each (order, ptr, sorted points, lo, hi)
    widen: Callable      # (src, dst) support arcs -> (src, dst) with their neighbourhood, this level


def cloud_levels(x, y, a, b, code, p):
    """Levels (finest first) of two clouds by k-d trees, without zero-weight points; also the
    original index of each finest-level node of x and y."""
    rows, cols = np.flatnonzero(a > 0), np.flatnonzero(b > 0)
    depths_x, depths_y = _depths(len(rows)), _depths(len(cols))
    depth = max(len(depths_x), len(depths_y))
    levels_x, order_x = _hierarchy(x[rows], a[rows], depths_x + depths_x[-1:] * (depth - len(depths_x)))
    levels_y, order_y = _hierarchy(y[cols], b[cols], depths_y + depths_y[-1:] * (depth - len(depths_y)))
    levels = []
    for (xl, al, up_x), (yl, bl, up_y) in zip(levels_x, levels_y):
        levels.append(Level(xl, yl, al, bl, up_x, up_y, _point_costs(xl, yl, code, p),
                             lambda xl=xl, yl=yl: (kd_cells(xl, CELL_HALVINGS), kd_cells(yl, CELL_HALVINGS)),
                             _nearest_clusters(xl)))
    return levels, rows[order_x], cols[order_y]


def _point_costs(xl, yl, code, p):
    def costs(rows, cols):
        out = np.empty(len(rows))
        _sk.arc_costs(xl, yl, code, p, rows, cols, out)
        return out
    return costs


def _nearest_clusters(coarse_x):
    """widen of a cloud level: (I, J) for the NEIGHBOUR_CELLS clusters I nearest to I' of each
    support arc (I', J)."""
    def widen(src, dst):
        nc = coarse_x.shape[0]
        k = min(NEIGHBOUR_CELLS, nc)
        if k <= 1:
            return src, dst
        mc = int(dst.max()) + 1
        near = scipy.spatial.cKDTree(coarse_x).query(coarse_x, k=k)[1].reshape(nc, k)
        by_src = np.argsort(src, kind="stable")
        deg = np.bincount(src, minlength=nc)
        first = np.concatenate([[0], np.cumsum(deg)])
        reps = deg[near].ravel()  # arcs of each neighbour, for every (I, neighbour) pair
        owner = np.repeat(np.repeat(np.arange(nc), k), reps)
        offset = np.arange(reps.sum()) - np.repeat(np.cumsum(reps) - reps, reps)
        picked = by_src[np.repeat(first[near.ravel()], reps) + offset]
        pairs = np.unique(np.concatenate([owner * mc + dst[picked], src * mc + dst]))
        return pairs // mc, pairs % mc
    return widen


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


def grid_levels(index, a, b, shape, step, code, p):
    """Levels (finest first) of two histograms on one grid by 2x2(x2) pooling, down to at most
    2**COARSE_DEPTH cells: a level's nodes are its cells with mass, in Morton (Z) order (cells
    near on the grid are near in memory, as the k-d order does for clouds), at the centre of
    their block of pixels, so that costs depend only on index offsets. Also the pixel of each
    finest-level node of a and b."""
    shape = np.asarray(shape)
    count = 1
    while np.prod(-(-shape // 2 ** (count - 1))) > 2 ** COARSE_DEPTH:
        count += 1
    centre = (shape - 1) / 2
    sides, pixels = [], []
    for w in (a, b):
        alive = np.flatnonzero(w > 0)
        key = _morton(index[alive])
        order = np.argsort(key, kind="stable")
        alive, key = alive[order], key[order]
        pixels.append(alive)
        cells, mass, up = [index[alive]], [w[alive]], []
        for _ in range(1, count):  # a parent's Morton key is its children's without their last bits
            key, first, inverse = np.unique(key >> len(shape), return_index=True, return_inverse=True)
            up.append(inverse.reshape(-1))
            cells.append(cells[-1][first] >> 1)
            mass.append(np.bincount(up[-1], mass[-1]))
        sides.append((cells, mass, up + [None]))
    (cells_x, mass_x, up_x), (cells_y, mass_y, up_y) = sides
    levels = []
    for level in range(count):
        width = 2 ** level
        grid = -(-shape // width)
        ix, iy = cells_x[level], cells_y[level]
        xl, yl = (np.ascontiguousarray((i * width + (width - 1) / 2 - centre) * step) for i in (ix, iy))
        table = np.ascontiguousarray((np.arange(grid.max())[None, :] * (width * step)[:, None]) ** 2)
        cells = _grid_blocks(ix, iy, xl, yl, grid, width, step, centre)
        levels.append(Level(xl, yl, mass_x[level], mass_y[level], up_x[level], up_y[level],
                            _table_costs(ix, iy, table, code, p), cells, _offset_neighbours(ix, len(iy), grid)))
    return levels, pixels[0], pixels[1]


def _morton(index):
    """Morton (Z-order) keys of integer grid indices (n, d): their bits interleaved."""
    d = index.shape[1]
    key = np.zeros(len(index), np.int64)
    for bit in range(int(index.max(initial=0)).bit_length()):
        for dim in range(d):
            key |= ((index[:, dim] >> bit) & 1) << (bit * d + d - 1 - dim)
    return key


def _table_costs(ix, iy, table, code, p):
    """Arc costs of a grid level from the index offsets: table[axis, |offset|] is the squared
    length of that offset along the axis."""
    def costs(rows, cols):
        out = np.empty(len(rows))
        _sk.grid_arc_costs(ix, iy, table, code, p, rows, cols, out)
        return out
    return costs


def _grid_blocks(ix, iy, xl, yl, grid, width, step, centre):
    """Pricing cells of a grid level: blocks of about 2**CELL_HALVINGS cells (those with mass),
    each bounded by the box of its index range."""
    side = max(1, round(2 ** (CELL_HALVINGS / len(grid))))
    blocks = -(-grid // side)

    def one(index, pts):
        linear, label = np.unique(np.ravel_multi_index((index // side).T, blocks), return_inverse=True)
        label = label.reshape(-1)
        order = np.argsort(label, kind="stable")
        ptr = np.concatenate([[0], np.cumsum(np.bincount(label))])
        first = np.stack(np.unravel_index(linear, blocks), axis=1) * side
        last = np.minimum(first + side - 1, grid - 1)
        lo, hi = ((k * width + (width - 1) / 2 - centre) * step for k in (first, last))
        return order, ptr, np.ascontiguousarray(pts[order]), lo, hi

    return lambda: (one(ix, xl), one(iy, yl))


def _offset_neighbours(ix, m, grid):
    """widen of a grid level: also (I, J) for the cells I with |I - I'|_inf <= GRID_NEIGHBOUR_RADIUS
    of each support arc (I', J)."""
    def widen(src, dst):
        r = GRID_NEIGHBOUR_RADIUS
        if r == 0:
            return src, dst
        lookup = np.full(np.prod(grid), -1, np.int64)
        lookup[np.ravel_multi_index(ix.T, grid)] = np.arange(len(ix))
        offsets = np.stack(np.meshgrid(*[np.arange(-r, r + 1)] * len(grid), indexing="ij"),
                           axis=-1).reshape(-1, len(grid))
        near = ix[src][:, None, :] + offsets[None]
        inside = ((near >= 0) & (near < grid)).all(axis=2)
        node = np.full(inside.shape, -1, np.int64)
        node[inside] = lookup[np.ravel_multi_index(near[inside].T, grid)]
        owner, partner = node.ravel(), np.repeat(dst, len(offsets))
        keep = owner >= 0
        pairs = np.unique(owner[keep] * m + partner[keep])
        return pairs // m, pairs % m
    return widen

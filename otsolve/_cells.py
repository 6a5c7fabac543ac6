"""Balanced k-d tree cells of a point cloud and cost bounds between boxes: the spatial index
shared by the multiscale exact solver (pricing all pairs) and truncated Sinkhorn (skipping the
pairs of negligible kernel)."""
import math

import numpy as np
from numba import njit

from ._costs import CITYBLOCK_POW, SQEUCLIDEAN


@njit(cache=True)
def kd_labels(x, labels):
    """Balanced k-d tree by median splits along the widest coordinate: labels[t, i] is the
    cell of point i at depth t (cells numbered left to right; a cell of one point is not
    split), labels.shape[0] - 1 >= ceil(log2 n) so that the last depth has one point per cell."""
    n, d = x.shape
    perm = np.arange(n)
    starts = np.zeros(n + 1, np.int64)
    ends = np.zeros(n + 1, np.int64)
    starts[0], ends[0] = 0, n
    count = 1
    new_starts = np.zeros(n + 1, np.int64)
    new_ends = np.zeros(n + 1, np.int64)
    for t in range(labels.shape[0]):
        new_count = 0
        for c in range(count):
            s, e = starts[c], ends[c]
            for k in range(s, e):
                labels[t, perm[k]] = c
            if e - s == 1:
                new_starts[new_count], new_ends[new_count] = s, e
                new_count += 1
                continue
            widest, spread = 0, -1.0
            for dim in range(d):
                lo, hi = np.inf, -np.inf
                for k in range(s, e):
                    v = x[perm[k], dim]
                    lo, hi = min(lo, v), max(hi, v)
                if hi - lo > spread:
                    widest, spread = dim, hi - lo
            seg = perm[s:e].copy()
            order = np.argsort(x[seg, widest], kind="mergesort")
            perm[s:e] = seg[order]
            mid = s + (e - s) // 2
            new_starts[new_count], new_ends[new_count] = s, mid
            new_starts[new_count + 1], new_ends[new_count + 1] = mid, e
            new_count += 2
        starts[:new_count] = new_starts[:new_count]
        ends[:new_count] = new_ends[:new_count]
        count = new_count


@njit(cache=True, inline="always")
def gap_cost(gaps, code, p):
    """metric(gaps) ** p for per-coordinate gaps >= 0: a lower bound of the cost between two
    boxes (or a point and a box) whose per-coordinate distances are ``gaps``."""
    s = 0.0
    if code == CITYBLOCK_POW:
        for k in range(gaps.shape[0]):
            s += gaps[k]
    else:
        for k in range(gaps.shape[0]):
            s += gaps[k] * gaps[k]
        if code == SQEUCLIDEAN:
            return s
        s = math.sqrt(s)
    return s if p == 1.0 else s ** p


def kd_cells(points, halvings):
    """Cells of about 2**halvings points (k-d tree cells of depth ceil(log2 n) - halvings): the
    order that makes each cell contiguous, the cell pointers, the sorted points and each cell's
    bounding box (lower and upper corners)."""
    n = points.shape[0]
    t = max(0, math.ceil(math.log2(max(n, 1))) - halvings)
    labels = np.empty((t + 1, n), np.int64)
    kd_labels(points, labels)
    order = np.argsort(labels[t], kind="stable")
    ptr = np.concatenate([[0], np.cumsum(np.bincount(labels[t]))])
    pts = np.ascontiguousarray(points[order])
    return order, ptr, pts, np.minimum.reduceat(pts, ptr[:-1]), np.maximum.reduceat(pts, ptr[:-1])

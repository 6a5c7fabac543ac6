"""Sinkhorn on large point clouds at small reg: kernel truncation by k-d cells (Schmitzer 2019)
and a coarse-to-fine warm start (clusters of the clouds solved first, as GeomLoss does for d <= 3).

At reg = 1e-3 diam^2 the plan's blur is ~3% of the diameter: a row's terms above e^-theta of its
sum lie in a disc holding ~10% of the points, and the rest are bounded cell by cell instead of
computed. Nothing is stored: the kept pairs are found again in every pass from the current
potentials, so memory stays O(n + m)."""
from __future__ import annotations

import math

import numpy as np

from .._cells import kd_cells
from .._costs import max_cost_bound
from . import _kernels

CELL_HALVINGS = 5        # cells of about 2**5 = 32 points: the bound tests cost ~1/32 of the
                         # pairs they decide on, and the runs of costs still vectorise
DROP_FRACTION = 1e-4     # a skipped term is below DROP_FRACTION x tol of its row's sum; the
                         # certified bound of all of them (count x largest term per cell) grows
                         # with the cells near the cut: at n = 10^5 (2-D uniform, reg 1e-3 diam^2)
                         # DROP_FRACTION 1e-3 gave 0.93 tol x mass per side
ITERATE_TOL = 0.8        # the truncated iterations stop at this share of tol, leaving the rest
                         # to that bound (both make the returned marginal_error)
COARSE_CLUSTERS = 2048   # the warm start solves the clouds clustered into this many cells each
                         # (dense 2048 x 2048 costs with a kept kernel: a few ms an iteration)
LEVEL_RATIO = 8          # each level of the warm start has 8x the clusters of the one before
TRUNCATE_MIN_PAIRS = 2**26  # automatic truncation from n m = 8192^2 pairs: the warm start's dense
                            # 2048^2 level (64 MiB) is then small beside the problem, whose memory
                            # stays O(n + m) below (the plain online passes)
TRUNCATE_REG_MAX = 0.01  # automatic truncation below this reg / cost bound (above it most
                         # pairs are kept anyway)
TRUNCATE_DIM_MAX = 3     # and in at most 3 dimensions (box bounds are loose in many)


def theta_for(tol):
    """Terms below exp(-theta) of their row's sum are skipped: theta = log(1 / (DROP_FRACTION tol))."""
    return math.log(1.0 / (DROP_FRACTION * max(tol, 1e-15)))


class _Cells:
    """One cloud sorted into k-d cells: order, pointers, sorted points (and transposed), boxes."""

    def __init__(self, points):
        self.order, self.ptr, self.points, self.lo, self.hi = kd_cells(points, CELL_HALVINGS)
        self.points_t = np.ascontiguousarray(self.points.T)


class TruncatedPointCost:
    """Costs ``metric(x_i, y_j) ** p`` recomputed in every pass, over the pairs whose term can
    exceed exp(-theta) of its row's sum; the rest are bounded (``log_dropped`` of the last pass
    on each side, and ``dropped_mass`` of the last evaluated plan: rows, columns)."""

    dense = None  # no kept kernel: the Newton phase does not apply

    def __init__(self, x, y, code, p, theta):
        self.code, self.p, self.theta = code, p, theta
        self.shape = (x.shape[0], y.shape[0])
        self.scale = self.max_abs = max_cost_bound(x, y, code, p)
        self.offset = 0.0
        both = np.concatenate([x, y])
        centre = 0.5 * (both.min(axis=0) + both.max(axis=0))  # costs are translation invariant, and
        self.cells = (_Cells(x - centre), _Cells(y - centre))  # the linear bounds keep their digits
        self.log_dropped = (np.full(self.shape[0], -np.inf), np.full(self.shape[1], -np.inf))
        self.dropped_mass = (0.0, 0.0)

    # no kept kernel for the compiled small-problem paths: the callers take the general ones
    def compiled_softmin(self, side, pot, log_w, eps, T):
        return False

    def compiled_iteration(self, f, g, log_a, log_b, a, eps, omega, clip, T_f, T_g):
        return None

    def _operands(self, side):
        rows, cols = self.cells[side], self.cells[1 - side]
        return (rows.points, rows.ptr, rows.lo, rows.hi, cols.points_t, cols.ptr, cols.lo, cols.hi, self.code,
                self.p)

    def softmin(self, side, h, inv_reg, lse):
        """lse_i <- log sum_j exp(h_j - C_ij inv_reg) over the kept pairs (side 0; side 1 over
        C^T), lse holding the guesses on entry; the bound of the skipped part in log_dropped."""
        rows, cols = self.cells[side], self.cells[1 - side]
        sorted_lse = lse[rows.order]
        dropped = np.empty(len(lse))
        _kernels.truncated_softmin(*self._operands(side), h[cols.order], inv_reg, self.theta, sorted_lse, dropped)
        lse[rows.order] = sorted_lse
        self.log_dropped[side][rows.order] = dropped

    def plan_stats(self, f, g, log_a, log_b, inv_reg, want_plan=False):
        """Per-row statistics and column sums of the truncated plan (its kept pairs; P = 0 on the
        others), and in ``dropped_mass`` the bounds of the mass skipped on rows and on columns.
        The column sums are one soft-min pass, sum_i P_ij = b_j e^(g_j / reg) sum_i a_i
        e^((f_i - C_ij) / reg): a third of the cost of the rows' statistics."""
        rows, cols = self.cells
        stats, dropped = np.empty((len(f), _kernels.N_STATS)), np.empty(len(f))
        _kernels.truncated_plan_rows(*self._operands(0), f[rows.order], g[cols.order], log_a[rows.order],
                                     log_b[cols.order], inv_reg, self.theta, stats, dropped)
        out = np.empty_like(stats)
        out[rows.order] = stats
        log_col = log_b + g * inv_reg
        lse = -g * inv_reg  # the guesses: exact when the columns are balanced
        self.softmin(1, log_a + f * inv_reg, inv_reg, lse)
        self.dropped_mass = (float(np.exp(dropped).sum()), float(np.exp(log_col + self.log_dropped[1]).sum()))
        return None, out, np.exp(log_col + lse)


def use_truncation(truncate, cost, reg, balanced):
    """Whether sinkhorn_points truncates its PointCost ``cost``: ``truncate`` if given (True
    needs a balanced problem), else for large balanced problems at small reg in low dimension."""
    if truncate is None:
        return (balanced and cost.shape[0] * cost.shape[1] >= TRUNCATE_MIN_PAIRS
                and cost.x.shape[1] <= TRUNCATE_DIM_MAX and reg <= TRUNCATE_REG_MAX * cost.scale)
    if not isinstance(truncate, (bool, np.bool_)):
        raise TypeError(f"truncate must be True, False or None; got {truncate!r}")
    if truncate and not balanced:
        raise ValueError("truncate=True needs a balanced problem (reg_m=None)")
    return bool(truncate)


def clusters(x, w, count):
    """The cloud clustered into ``count`` k-d cells (a power of 2): barycentres, masses (cells of
    zero mass left out) and the cluster of each point (-1 in a cell left out)."""
    depth = int(math.log2(count))
    halvings = max(0, math.ceil(math.log2(max(len(w), 1))) - depth)
    order, ptr, points, _, _ = kd_cells(x, halvings)
    ws = w[order]
    mass = np.add.reduceat(ws, ptr[:-1])
    centres = np.add.reduceat(ws[:, None] * points, ptr[:-1]) / np.where(mass > 0, mass, 1.0)[:, None]
    keep = mass > 0
    label = np.empty(len(w), np.int64)
    label[order] = np.where(keep, np.cumsum(keep) - 1, -1)[np.repeat(np.arange(len(mass)), np.diff(ptr))]
    return np.ascontiguousarray(centres[keep]), mass[keep], label


def cascade(x, w):
    """The levels of the warm start, coarsest first, as (points, weights, the parent of each in
    the level before, -1 for the first): COARSE_CLUSTERS clusters, then LEVEL_RATIO times more
    while that leaves a factor of 2 to the cloud, then the cloud itself."""
    counts = [COARSE_CLUSTERS]
    while counts[-1] * LEVEL_RATIO <= len(w) / 2:
        counts.append(counts[-1] * LEVEL_RATIO)
    levels, previous = [], None
    for count in counts:
        pts, mass, label = clusters(x, w, count)
        parent = np.full(len(mass), -1, np.int64)
        if previous is not None:
            parent[label[label >= 0]] = previous[label >= 0]
        levels.append((pts, mass, parent))
        previous = label
    levels.append((x, w, previous))
    return levels


def parent_guess(pot, parent):
    """The potential of each point's parent cluster: a guess of the point's own (NaN: none)."""
    return np.where(parent >= 0, pot[np.maximum(parent, 0)], np.nan)

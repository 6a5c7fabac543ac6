"""The cost operand of Sinkhorn: a dense matrix (with its contiguous transpose) or two point
clouds whose costs the kernels recompute on the fly (O(n + m) memory)."""
from __future__ import annotations

import contextlib

import numba
import numpy as np

from .._costs import CITYBLOCK_POW, SQEUCLIDEAN, _cost_matrix
from . import _kernels


PARALLEL_MIN_PAIRS = 4_000_000  # below this a pass takes a few ms on one thread, while waking
                                # the other threads can cost a scheduler time slice (~10 ms) per
                                # pass on a busy machine: small problems run on one thread


@contextlib.contextmanager
def threads_for(pairs):
    """Run the enclosed kernels on one thread when a pass covers fewer than PARALLEL_MIN_PAIRS."""
    if pairs >= PARALLEL_MIN_PAIRS:
        yield
        return
    before = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        yield
    finally:
        numba.set_num_threads(before)


class MatrixCost:
    """A dense (n, m) cost matrix: the g half-iteration runs over blocks of columns, streaming
    over the rows, so no transposed copy is needed (C is read once per half-iteration)."""

    def __init__(self, C):
        self.C = C
        self.shape = C.shape
        self.scale = float(C.max() - C.min())

    def softmin(self, side, h, inv_reg, lse):
        if side == 0:
            _kernels.softmin_rows(self.C, self.C.shape[0], h, inv_reg, lse)
        else:
            _kernels.softmin_cols(self.C, h, inv_reg, lse)

    def plan_stats(self, f, g, log_a, log_b, inv_reg, want_plan=True):
        """The plan (dense), per-row statistics and the column sums of the plan."""
        P = np.empty(self.shape)
        stats = np.empty((self.shape[0], 4))
        _kernels.plan_rows(self.C, f, g, log_a, log_b, inv_reg, P, stats)
        return P, stats, P.sum(axis=0)


class PointCost:
    """Costs ``metric(x_i, y_j) ** p`` (kernel ``code`` of :func:`otsolve._costs.cost_code`)."""

    def __init__(self, x, y, code, p):
        self.x, self.y, self.code, self.p = x, y, code, p
        self.xT, self.yT = np.ascontiguousarray(x.T), np.ascontiguousarray(y.T)  # O((n + m) d)
        self.shape = (x.shape[0], y.shape[0])
        both = np.concatenate([x, y])
        extent = both.max(axis=0) - both.min(axis=0)
        diameter = extent.sum() if code == CITYBLOCK_POW else float(np.sqrt((extent ** 2).sum()))
        self.scale = float(diameter ** 2 if code == SQEUCLIDEAN else diameter ** p)  # >= max cost

    def softmin(self, side, h, inv_reg, lse):
        src, dstT = (self.x, self.yT) if side == 0 else (self.y, self.xT)
        _kernels.softmin_rows((src, dstT, self.code, self.p), src.shape[0], h, inv_reg, lse)

    def plan_stats(self, f, g, log_a, log_b, inv_reg, want_plan=False):
        """Per-row statistics and column sums of the plan (two passes), the plan only if asked."""
        stats = np.empty((self.shape[0], 4))
        col_stats = np.empty((self.shape[1], 4))
        _kernels.plan_rows_points(self.x, self.yT, self.code, self.p, f, g, log_a, log_b, inv_reg, stats)
        _kernels.plan_rows_points(self.y, self.xT, self.code, self.p, g, f, log_b, log_a, inv_reg,
                                  col_stats)
        P = None
        if want_plan:
            C = np.empty(self.shape)
            _cost_matrix(self.x, self.y, self.code, self.p, C)
            P = np.empty(self.shape)
            _kernels.plan_rows(C, f, g, log_a, log_b, inv_reg, P, np.empty((self.shape[0], 4)))
        return P, stats, col_stats[:, 0]

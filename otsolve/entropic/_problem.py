"""The cost operand of Sinkhorn: a dense matrix (with the Gibbs kernel kept beside it) or two
point clouds whose costs the kernels recompute on the fly (O(n + m) memory)."""
from __future__ import annotations

import numpy as np

from .._costs import _cost_matrix, max_cost_bound, point_source
from .._threads import threads_for
from . import _kernels


KERNEL_MAX_PAIRS = 2**28  # the Gibbs kernel (8 bytes a pair) is kept up to 2 GiB
KERNEL_SUM_MIN = 1e-100   # a mat-vec entry above 1 / KERNEL_SUM_MIN rebuilds the kernel, so its
                          # entries stay <= 1e100 (the first pass after a rebuild or squaring has
                          # all weights 1); one below KERNEL_SUM_MIN is redone in the log domain:
                          # terms lost to underflow are then below 1e-108 of every sum
MAX_BAD_LINES = 0.25      # above this fraction of such lines the kernel is rebuilt instead
SCALING_MAX = 600.0       # largest |log| of a scaling absorbed into the kernel when eps halves
MAX_SQUARINGS = 6         # a squaring doubles the relative error of K: after this many in a row it
                          # is rebuilt instead (K then stays within ~200 ulp of exact)
PLAN_SCALING_MAX = 200.0  # and of those turning the kernel into the plan: entries of K lost to
                          # underflow are then < 1e-134 a_i b_j in the plan
OFFSET_RATIO = 1.0        # a balanced problem whose costs sit further than their spread from 0 is
                          # solved on C - min(C): potentials and C / reg then keep the digits of
                          # the differences, so an offset changes neither the iterations nor the floor
DENSE_MAX_PAIRS = 2**22   # point clouds with at most this many pairs are solved on a dense matrix
COMPILED_MAX_PAIRS = 2**18  # kept-kernel soft-mins up to this size run as one compiled call: the
                            # per-iteration overhead of numpy calls was twice POT's whole solve
NO_KERNEL, NO_SCALING = np.empty((0, 0)), np.empty(0)


class MatrixCost:
    """A dense (n, m) cost matrix, with the Gibbs kernel K_ij = exp(hF_i + hG_j - C_ij / eps) of
    the current eps kept beside it (stabilised scaling, Schmitzer 2019): a soft-min is then one
    mat-vec with K instead of n m exponentials. A log-domain pass rebuilds K, normalised so that
    its rows (or columns) sum to one, whenever a mat-vec would not be exact to rounding (the
    potentials drifted too far from hF, hG, or eps changed); when eps halves K is squared
    instead, at most MAX_SQUARINGS times in a row. The log-domain column pass runs over blocks of columns, streaming over the rows, so
    no transposed copy of C is needed."""

    def __init__(self, C, shift=False):
        lo, hi = float(C.min()), float(C.max())
        self.offset = 0.0  # subtracted from C (balanced problems only: the plan is the same)
        if shift and abs(lo) > OFFSET_RATIO * (hi - lo):
            C, self.offset = C - lo, lo  # a copy; differences of nearby floats are exact
        self.C = C
        self.shape = C.shape
        self.scale = hi - lo
        self.max_abs = max(abs(lo - self.offset), abs(hi - self.offset))  # of the costs read
        self.K = np.empty(C.shape) if C.size <= KERNEL_MAX_PAIRS else None
        self.inv_reg = 0.0  # 1 / eps of K; 0 while it holds nothing usable
        self.squarings = 0  # since K was last built by a log-domain pass
        self.hF, self.hG = np.zeros(C.shape[0]), np.zeros(C.shape[1])

    def softmin(self, side, h, inv_reg, lse):
        if self.K is not None:
            if inv_reg == 2.0 * self.inv_reg and self.squarings < MAX_SQUARINGS:
                self._square(side, h, lse)
            if inv_reg == self.inv_reg and self._scaled_softmin(side, h, lse):
                return
        K = NO_KERNEL if self.K is None else self.K
        if side == 0:
            _kernels.softmin_rows(self.C, self.C.shape[0], h, inv_reg, lse, K)
        else:
            _kernels.softmin_cols(self.C, h, inv_reg, lse, K)
        if self.K is not None:  # K_ij = exp(h_j - C_ij / eps - lse_i) (side 0), or transposed
            self._absorb(side, h, -lse, inv_reg)

    def compiled_softmin(self, side, pot, log_w, eps, T):
        """The soft-min of :func:`sinkhorn._softmin` in one compiled call, if the kept kernel is
        at this eps and small (COMPILED_MAX_PAIRS) and every line is safe; False otherwise (T
        untouched: the caller takes the general path)."""
        if self.K is None or self.K.size > COMPILED_MAX_PAIRS or 1.0 / eps != self.inv_reg:
            return False
        absorbed, other = (self.hG, self.hF) if side == 0 else (self.hF, self.hG)
        return _kernels.scaled_softmin(self.K, side, pot, log_w, eps, absorbed, other, KERNEL_SUM_MIN,
                                       T, self.C, MAX_BAD_LINES) == 1

    def compiled_iteration(self, f, g, log_a, log_b, a, eps, omega, clip, T_f, T_g):
        """A balanced iteration (row error of (f, g), then (f, g) updated with relaxation omega) by
        :func:`_kernels.scaled_iteration`, under the conditions of :meth:`compiled_softmin`:
        (err, f_new, g_new), or None (the caller takes the general path)."""
        if self.K is None or self.K.size > COMPILED_MAX_PAIRS or 1.0 / eps != self.inv_reg:
            return None
        f_new, g_new = np.empty_like(f), np.empty_like(g)
        err = _kernels.scaled_iteration(self.K, self.hF, self.hG, f, g, log_a, log_b, a, eps, omega,
                                        KERNEL_SUM_MIN, clip, T_f, T_g, f_new, g_new, self.C, MAX_BAD_LINES)
        return None if err < 0.0 else (err, f_new, g_new)

    def compiled_point(self, f, log_a, log_b, a, b, eps, T_g):
        """g = T(f) into T_g and the plan operator, row sums and errors of (f, g) in one compiled call
        (:func:`_kernels.newton_point`) under the conditions of :meth:`compiled_softmin`: (K, u, v,
        rows, row error, a.f + b.g, column error), or None (the caller takes the general path)."""
        if self.K is None or self.K.size > COMPILED_MAX_PAIRS or 1.0 / eps != self.inv_reg:
            return None
        u, v, rows = np.empty(self.shape[0]), np.empty(self.shape[1]), np.empty(self.shape[0])
        err, phi, col_err = _kernels.newton_point(self.K, self.hF, self.hG, self.C, f, log_a, log_b, a, b,
                                                  eps, KERNEL_SUM_MIN, MAX_BAD_LINES, PLAN_SCALING_MAX, T_g,
                                                  u, v, rows)
        return None if err < 0.0 else (self.K, u, v, rows, err, phi, col_err)

    def _absorb(self, side, h, h_other, inv_reg):
        """Record the potentials and eps of K: h on the side summed over, h_other on the other;
        zero weights (h = -inf) have zero kernel lines, their potential is recorded as 0."""
        h, h_other = (np.where(np.isfinite(z), z, 0.0) for z in (h, h_other))
        self.hF, self.hG = (h_other, h) if side == 0 else (h, h_other)
        self.inv_reg, self.squarings = inv_reg, 0

    def _scaled_softmin(self, side, h, lse):
        """lse_i <- log sum_j exp(h_j - C_ij / eps) = log (K w)_i - hF_i + top, w = exp(h - hG
        - top) (side 0; side 1 is the same with K^T). Lines where the mat-vec could lose terms to
        underflow (zero-weight ones among them: their kernel lines are 0) are redone in the log
        domain (small problems: in the same compiled call); if there are many, or an overflow,
        False and lse untouched."""
        absorbed, other = (self.hG, self.hF) if side == 0 else (self.hF, self.hG)
        if self.K.size <= COMPILED_MAX_PAIRS:
            return _kernels.scaled_lse(self.K, side, h, absorbed, other, KERNEL_SUM_MIN, lse, self.C,
                                       self.inv_reg, MAX_BAD_LINES) == 1
        d = h - absorbed
        top = d.max()
        if not np.isfinite(top):
            return False
        d -= top
        w = np.exp(d, out=d)
        r = self.K @ w if side == 0 else w @ self.K
        if not r.max() <= 1.0 / KERNEL_SUM_MIN:  # (or NaN) so that K stays <= 1e100, see above
            return False
        if r.min() >= KERNEL_SUM_MIN:  # the common case, without the bookkeeping of bad lines
            np.log(r, out=lse)
            lse += top - other
            return True
        good = r >= KERNEL_SUM_MIN
        bad = np.flatnonzero(~good)
        if len(bad) > MAX_BAD_LINES * len(r):
            return False
        guess = lse[bad]
        np.log(np.where(good, r, 1.0), out=lse)
        lse += top - other
        if len(bad):
            lse[bad] = self._log_lines(side, bad, h, guess)
        return True

    def _log_lines(self, side, lines, h, guess):
        """The log-domain soft-min of a few rows (side 0) or columns of C, from the guess."""
        lse = guess.copy()
        if side == 0:
            _kernels.softmin_rows(self.C[lines], len(lines), h, self.inv_reg, lse, NO_KERNEL)
        else:
            _kernels.softmin_cols(np.ascontiguousarray(self.C[:, lines]), h, self.inv_reg, lse,
                                  NO_KERNEL)
        return lse

    def _square(self, side, h, lse):
        """eps halved: K <- (u_i K_ij v_j)^2, where u, v move K at the old eps to the potentials of
        this call (h, and the guess -lse on the other side); K is given up if they are extreme."""
        inv_reg, self.inv_reg = 2.0 * self.inv_reg, 0.0
        new_F, new_G = (-lse, h) if side == 0 else (h, -lse)
        new_F, new_G = (np.where(np.isfinite(z), z, 0.0) for z in (new_F, new_G))
        log_u, log_v = 0.5 * new_F - self.hF, 0.5 * new_G - self.hG
        if max(np.abs(log_u).max(), np.abs(log_v).max()) > SCALING_MAX:
            return
        _kernels.square_scaled(self.K, np.exp(log_u), np.exp(log_v))
        self.hF, self.hG, self.inv_reg = new_F, new_G, inv_reg
        self.squarings += 1

    def plan_operator(self, f, g, log_a, log_b, inv_reg):
        """(K, u, v) with the plan of (f, g) at 1 / eps = inv_reg equal to diag(u) K diag(v), g the
        soft-min of f (columns exact); K is rebuilt for f by a log-domain column pass if it does
        not fit. None when no kernel is kept (or the potentials are far from g = T(f))."""
        if self.K is None:
            return None
        u, v = self._plan_scalings(f, g, log_a, log_b, inv_reg)
        if len(v) == 0:
            self.exact_cols(f, g, log_a, inv_reg)
            u, v = self._plan_scalings(f, g, log_a, log_b, inv_reg)
        return None if len(v) == 0 else (self.K, u, v)

    def exact_cols(self, f, g, log_a, inv_reg):
        """g <- T(f) (in place) by a log-domain column pass, which rebuilds K at (f, g)."""
        h = log_a + f * inv_reg
        lse = g * -inv_reg  # the guess shifting the exponentials
        _kernels.softmin_cols(self.C, h, inv_reg, lse, self.K)
        self._absorb(1, h, -lse, inv_reg)
        g[:] = lse / -inv_reg

    def plan_stats(self, f, g, log_a, log_b, inv_reg, want_plan=True):
        """The plan (dense), per-row statistics and the column sums of the plan; the plan is the
        kernel scaled when that is exact to rounding (its memory is reused), else recomputed."""
        stats = np.empty((self.shape[0], _kernels.N_STATS))
        if self.K is None:
            P, u, v = np.empty(self.shape), NO_SCALING, NO_SCALING
        else:
            P, u, v = self.K, *self._plan_scalings(f, g, log_a, log_b, inv_reg)
        self.inv_reg = 0.0  # K becomes the plan
        _kernels.plan_rows(self.C, self.shape[0], f, g, log_a, log_b, inv_reg, P, stats, u, v)
        return P, stats, P.sum(axis=0)

    def _plan_scalings(self, f, g, log_a, log_b, inv_reg):
        """u, v with P = diag(u) K diag(v), or empty ones if K does not fit (f, g, eps)."""
        if inv_reg != self.inv_reg:
            return NO_SCALING, NO_SCALING
        log_u, log_v = f * inv_reg - self.hF, g * inv_reg - self.hG
        drift = max(np.abs(log_u[np.isfinite(log_a)]).max(), np.abs(log_v[np.isfinite(log_b)]).max())
        if not drift <= PLAN_SCALING_MAX:  # zero weights aside: their lines of P are 0
            return NO_SCALING, NO_SCALING
        return np.exp(log_a + log_u), np.exp(log_b + log_v)


class PointCost:
    """Costs ``metric(x_i, y_j) ** p`` (kernel ``code`` of :func:`otsolve._costs.cost_code`),
    recomputed in every pass; up to DENSE_MAX_PAIRS pairs they are computed once and solved as a
    :class:`MatrixCost` (its kept kernel makes an iteration ~10x faster; 64 MiB at most)."""

    def __init__(self, x, y, code, p, shift=False):
        self.x, self.y, self.code, self.p = x, y, code, p
        self.offset = 0.0
        self.sources = (point_source(x, y, code, p), point_source(y, x, code, p))  # C and C^T
        self.shape = (x.shape[0], y.shape[0])
        self.scale = self.max_abs = max_cost_bound(x, y, code, p)
        self.dense = None
        if self.shape[0] * self.shape[1] <= DENSE_MAX_PAIRS:
            C = np.empty(self.shape)
            with threads_for(C.size):
                _cost_matrix(x, y, code, p, C)  # the same costs (to rounding) as the passes
            self.dense = MatrixCost(C, shift)
            self.offset, self.max_abs = self.dense.offset, self.dense.max_abs

    def compiled_softmin(self, side, pot, log_w, eps, T):
        """As :meth:`MatrixCost.compiled_softmin` on the dense matrix; False without one."""
        return self.dense is not None and self.dense.compiled_softmin(side, pot, log_w, eps, T)

    def compiled_iteration(self, f, g, log_a, log_b, a, eps, omega, clip, T_f, T_g):
        """As :meth:`MatrixCost.compiled_iteration` on the dense matrix; None without one."""
        if self.dense is None:
            return None
        return self.dense.compiled_iteration(f, g, log_a, log_b, a, eps, omega, clip, T_f, T_g)

    def compiled_point(self, f, log_a, log_b, a, b, eps, T_g):
        """As :meth:`MatrixCost.compiled_point` on the dense matrix; None without one."""
        return None if self.dense is None else self.dense.compiled_point(f, log_a, log_b, a, b, eps, T_g)

    def softmin(self, side, h, inv_reg, lse):
        if self.dense is not None:
            self.dense.softmin(side, h, inv_reg, lse)
            return
        _kernels.softmin_rows(self.sources[side], self.shape[side], h, inv_reg, lse, NO_KERNEL)

    def plan_operator(self, f, g, log_a, log_b, inv_reg):
        """As :meth:`MatrixCost.plan_operator` on the dense matrix; None without one."""
        if self.dense is None:
            return None
        return self.dense.plan_operator(f, g, log_a, log_b, inv_reg)

    def exact_cols(self, f, g, log_a, inv_reg):
        self.dense.exact_cols(f, g, log_a, inv_reg)

    def plan_stats(self, f, g, log_a, log_b, inv_reg, want_plan=False):
        """Per-row statistics and column sums of the plan (two passes), the plan only if asked."""
        if self.dense is not None:
            P, stats, cols = self.dense.plan_stats(f, g, log_a, log_b, inv_reg)
            return (P if want_plan else None), stats, cols
        n, m = self.shape
        P = np.empty(self.shape) if want_plan else NO_KERNEL
        stats, col_stats = np.empty((n, _kernels.N_STATS)), np.empty((m, _kernels.N_STATS))
        _kernels.plan_rows(self.sources[0], n, f, g, log_a, log_b, inv_reg, P, stats, NO_SCALING,
                           NO_SCALING)
        _kernels.plan_rows(self.sources[1], m, g, f, log_b, log_a, inv_reg, NO_KERNEL, col_stats,
                           NO_SCALING, NO_SCALING)
        return (P if want_plan else None), stats, col_stats[:, 0]

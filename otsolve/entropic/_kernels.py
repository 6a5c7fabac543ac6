"""Numba kernels of log-domain Sinkhorn: fused, parallel log-sum-exp row passes over a cost
matrix or over costs recomputed from point clouds, and the evaluation of the implied plan.

The exponential is :func:`otsolve._fastmath.fast_exp`, which vectorises (libm's does not), and
the loops are compiled with its ``FAST`` flags (sums reordered, multiply-adds fused; inf and NaN
kept): a third faster.
"""
import numpy as np
from numba import njit, prange

from .._costs import cost_chunk
from .._fastmath import FAST, fast_exp

CHUNK = 256                 # columns per accumulator block: fits L1, vectorises
SUM_MIN, SUM_MAX = 1e-200, 1e200   # a shifted sum outside this range is redone with the exact max
N_STATS = 5                 # per-row statistics of plan_rows


@njit(cache=True, inline="always", fastmath=FAST)
def _acc_exp(hh, cc, inv_reg, shift, acc, out):
    """acc[jj] += exp(hh_jj - cc_jj * inv_reg - shift), the terms also stored in ``out`` unless it
    is empty: elementwise, so that it vectorises."""
    if out.shape[0] == 0:
        for jj in range(cc.shape[0]):
            acc[jj] += fast_exp(hh[jj] - cc[jj] * inv_reg - shift)
    else:
        for jj in range(cc.shape[0]):
            e = fast_exp(hh[jj] - cc[jj] * inv_reg - shift)
            out[jj] = e
            acc[jj] += e


@njit(cache=True, inline="always", fastmath=FAST)
def _max_term(hh, cc, inv_reg, top):
    for jj in range(cc.shape[0]):
        top = max(top, hh[jj] - cc[jj] * inv_reg)
    return top


def _softmin_rows(src, n, h, inv_reg, lse, K):
    """lse[i] <- log sum_j exp(h_j - C_ij * inv_reg) for the n rows of a cost source (a dense
    matrix, or point clouds whose costs are recomputed, see otsolve._costs.cost_chunk).

    ``lse`` holds a guess on entry (the previous pass), used to shift the exponentials so that
    one pass suffices; a row whose shifted sum leaves [SUM_MIN, SUM_MAX] is redone with its
    exact maximum as the shift (first pass, new reg level). Unless ``K`` is empty (0 rows) it
    receives the Gibbs kernel normalised by rows, K_ij = exp(h_j - C_ij * inv_reg - lse_i).
    """
    m = h.shape[0]
    store = K.shape[0] > 0
    for i in prange(n):
        acc, buf = np.empty(CHUNK), np.empty(CHUNK)
        out = K[i] if store else buf[:0]
        shift = lse[i]
        for attempt in range(2):
            acc[:] = 0.0
            for j0 in range(0, m, CHUNK):
                k = min(CHUNK, m - j0)
                _acc_exp(h[j0:j0 + k], cost_chunk(src, i, j0, k, buf), inv_reg, shift, acc,
                         out[j0:j0 + k] if store else out)
            s = acc.sum()
            if SUM_MIN <= s <= SUM_MAX:
                break
            top = -np.inf
            for j0 in range(0, m, CHUNK):
                k = min(CHUNK, m - j0)
                top = _max_term(h[j0:j0 + k], cost_chunk(src, i, j0, k, buf), inv_reg, top)
            shift = top
        lse[i] = np.log(s) + shift
        if store:
            out *= 1.0 / s


softmin_rows = njit(cache=True, parallel=True, fastmath=FAST)(_softmin_rows)
softmin_rows_serial = njit(cache=True, fastmath=FAST)(_softmin_rows)  # inside a loop over pairs


@njit(cache=True, inline="always", fastmath=FAST)
def _col_block_sums(C, h, inv_reg, shift, acc, j0, K):
    """acc[jj] = sum_i exp(h_i - C[i, j0 + jj] * inv_reg - shift[jj]), row by row; the terms
    are stored in K unless it is empty."""
    acc[:] = 0.0
    k = acc.shape[0]
    for i in range(C.shape[0]):
        row, hi = C[i, j0:j0 + k], h[i]
        if K.shape[0] == 0:
            for jj in range(k):
                acc[jj] += fast_exp(hi - row[jj] * inv_reg - shift[jj])
        else:
            out = K[i, j0:j0 + k]
            for jj in range(k):
                e = fast_exp(hi - row[jj] * inv_reg - shift[jj])
                out[jj] = e
                acc[jj] += e


def _softmin_cols(C, h, inv_reg, lse, K):
    """lse[j] <- log sum_i exp(h_i - C_ij * inv_reg): :func:`softmin_rows` of C^T without
    forming it; each task takes CHUNK columns and streams over the rows (C read once). Unless
    ``K`` is empty it receives the kernel normalised by columns, exp(h_i - C_ij * inv_reg - lse_j)."""
    n, m = C.shape
    for t in prange((m + CHUNK - 1) // CHUNK):
        j0 = t * CHUNK
        k = min(CHUNK, m - j0)
        acc, shift = np.empty(k), lse[j0:j0 + k].copy()
        _col_block_sums(C, h, inv_reg, shift, acc, j0, K)
        bad = False
        for jj in range(k):
            bad = bad or not (SUM_MIN <= acc[jj] <= SUM_MAX)
        if bad:  # a poor guess in this block: shift every column by its exact maximum
            shift[:] = -np.inf
            for i in range(n):
                for jj in range(k):
                    shift[jj] = max(shift[jj], h[i] - C[i, j0 + jj] * inv_reg)
            _col_block_sums(C, h, inv_reg, shift, acc, j0, K)
        for jj in range(k):
            lse[j0 + jj] = np.log(acc[jj]) + shift[jj]
        if K.shape[0] > 0:
            inv = 1.0 / acc
            for i in range(n):
                K[i, j0:j0 + k] *= inv


softmin_cols = njit(cache=True, parallel=True, fastmath=FAST)(_softmin_cols)
softmin_cols_serial = njit(cache=True, fastmath=FAST)(_softmin_cols)  # inside a loop over pairs


PHI_SERIES = 0.1  # below this |z|, phi(z) = z e^z - e^z + 1 by its series (no cancellation)


@njit(cache=True, inline="always", fastmath=FAST)
def _phi(z, ez):
    """z e^z - e^z + 1 = sum_k>=2 (k - 1) z^k / k! (P log(P/ab) - P + ab = ab phi(z) for
    P = ab e^z), to a few ulps: the KL of a plan near a b^T (large reg) has no cancellation."""
    if abs(z) >= PHI_SERIES:
        return z * ez - ez + 1.0
    acc, term = 0.0, z
    for k in range(2, 12):
        term *= z / k
        acc += (k - 1) * term
    return acc


@njit(cache=True, inline="always", fastmath=FAST)
def _plan_chunk(fi, gg, la, lb, cc, inv_reg, out, acc, ui, vv):
    """out_j = exp(la + lb_j + (fi + g_j - c_j) * inv_reg), or out_j * ui * v_j when ``vv`` is not
    empty (out holds the Gibbs kernel and u, v scale it to the plan); per-lane sums of P, P c,
    a b phi(z) (the KL terms), max of fi + g_j - c_j, and a b (e^z - 1) (P - a b, without
    cancellation) in acc (5, CHUNK), z = (fi + g_j - c_j) / reg: elementwise, so that it vectorises."""
    scaled = vv.shape[0] > 0
    for jj in range(cc.shape[0]):
        slack = fi + gg[jj] - cc[jj]
        z = slack * inv_reg
        ab = fast_exp(la + lb[jj])
        ez = fast_exp(z)
        pij = out[jj] * ui * vv[jj] if scaled else fast_exp(la + lb[jj] + z)  # no underflow of ab
        out[jj] = pij
        acc[0, jj] += pij
        acc[1, jj] += pij * cc[jj]
        acc[2, jj] += ab * _phi(z, ez) if ab > 0.0 else 0.0
        acc[3, jj] = max(acc[3, jj], slack)
        # e^z - 1 by a subtraction unless |z| < PHI_SERIES (there it would lose digits): libm's
        # expm1 took a third of the pass
        em1 = ez - 1.0 if abs(z) >= PHI_SERIES else np.expm1(z)
        acc[4, jj] += ab * em1 if ab > 0.0 else 0.0


@njit(cache=True, inline="always", fastmath=FAST)
def _scaled_plan_chunk(fi, gg, ai, bb, cc, inv_reg, out, acc, ui, vv):
    """:func:`_plan_chunk` when ``out`` holds the Gibbs kernel: P = u K v and no exponential
    (a b phi(z) = P z - P + a b, P - a b by a subtraction, the series where |z| < PHI_SERIES):
    the evaluation of a small problem cost as much as all its iterations."""
    small = False
    for jj in range(cc.shape[0]):
        slack = fi + gg[jj] - cc[jj]
        z = slack * inv_reg
        ab = ai * bb[jj]
        pij = out[jj] * ui * vv[jj]
        out[jj] = pij
        acc[0, jj] += pij
        acc[1, jj] += pij * cc[jj]
        near = abs(z) < PHI_SERIES
        small = small or near
        acc[2, jj] += 0.0 if near else pij * z - pij + ab
        acc[3, jj] = max(acc[3, jj], slack)
        acc[4, jj] += 0.0 if near else pij - ab
    if small:
        for jj in range(cc.shape[0]):
            z = (fi + gg[jj] - cc[jj]) * inv_reg
            if abs(z) < PHI_SERIES:
                ab = ai * bb[jj]
                acc[2, jj] += ab * _phi(z, 1.0)  # the series (its second argument is unused)
                acc[4, jj] += ab * np.expm1(z)


@njit(cache=True, inline="always", fastmath=FAST)
def _reduce_stats(acc, stats):
    stats[0], stats[1], stats[2] = acc[0].sum(), acc[1].sum(), acc[2].sum()
    stats[3] = acc[3].max()
    stats[4] = acc[4].sum()


def _plan_rows(src, n, f, g, log_a, log_b, inv_reg, P, stats, u, v):
    """P_ij = a_i b_j exp((f_i + g_j - C_ij) * inv_reg) for the n rows of a cost source (see
    softmin_rows), or u_i P_ij v_j when v is not empty (P holding the Gibbs kernel); stats[i] =
    (sum_j P_ij, sum_j P_ij C_ij, sum_j P_ij log(P_ij / a_i b_j) - P_ij + a_i b_j, max_j f_i + g_j
    - C_ij, sum_j P_ij - a_i b_j). An empty P (0 rows): the statistics only, no plan stored."""
    m = g.shape[0]
    store, scaled = P.shape[0] > 0, v.shape[0] > 0
    b = np.exp(log_b) if scaled else log_b
    for i in prange(n):
        buf, scratch = np.empty(CHUNK), np.empty(CHUNK)
        acc = np.zeros((N_STATS, CHUNK))
        acc[3, :] = -np.inf
        ui = u[i] if scaled else 1.0
        ai = np.exp(log_a[i])
        for j0 in range(0, m, CHUNK):
            k = min(CHUNK, m - j0)
            if scaled and store:
                _scaled_plan_chunk(f[i], g[j0:j0 + k], ai, b[j0:j0 + k], cost_chunk(src, i, j0, k, buf),
                                   inv_reg, P[i, j0:j0 + k], acc, ui, v[j0:j0 + k])
                continue
            _plan_chunk(f[i], g[j0:j0 + k], log_a[i], log_b[j0:j0 + k],
                        cost_chunk(src, i, j0, k, buf), inv_reg,
                        P[i, j0:j0 + k] if store else scratch[:k], acc, ui, v[j0:j0 + k] if scaled else v)
        _reduce_stats(acc, stats[i])


plan_rows = njit(cache=True, parallel=True, fastmath=FAST)(_plan_rows)
plan_rows_serial = njit(cache=True, fastmath=FAST)(_plan_rows)  # inside a loop over pairs


def _square_scaled(K, u, v):
    """K_ij <- (u_i K_ij v_j)^2 in place: the Gibbs kernel at half the reg, scalings absorbed."""
    n, m = K.shape
    for i in prange(n):
        row, ui = K[i], u[i]
        for j in range(m):
            z = ui * row[j] * v[j]
            row[j] = z * z


square_scaled = njit(cache=True, parallel=True, fastmath=FAST)(_square_scaled)
square_scaled_serial = njit(cache=True, fastmath=FAST)(_square_scaled)  # inside a loop over pairs


@njit(cache=True)
def is_symmetric(C):
    """C == C^T, stopping at the first difference."""
    n = C.shape[0]
    if C.shape[1] != n:
        return False
    for i in range(n):
        for j in range(i):
            if C[i, j] != C[j, i]:
                return False
    return True


@njit(cache=True, parallel=True, fastmath=FAST)
def scaled_square_rows(K, u, w, out):
    """out[i] = u_i^2 sum_j K_ij^2 w_j: the diagonal of P diag(w / v^2) P^T for P = diag(u) K diag(v)."""
    n, m = K.shape
    for i in prange(n):
        row, s = K[i], 0.0
        for j in range(m):
            s += row[j] * row[j] * w[j]
        out[i] = u[i] * u[i] * s


@njit(cache=True, fastmath=FAST)  # sums reordered: the mat-vecs vectorise (inf and NaN kept)
def scaled_lse(K, side, h, absorbed, other, sum_min, lse):
    """lse_i <- log (K w)_i + top - other_i (side 0; K^T w for side 1), w = exp(h - absorbed - top),
    top = max(h - absorbed): the kept-kernel soft-min of a small problem in one call (its numpy
    form is ten calls of microseconds each). Returns 1 when done, 0 when some sum is below sum_min
    (lse untouched: the caller redoes those lines), -1 when top is not finite or a sum is above
    1 / sum_min or NaN."""
    top = -np.inf
    for j in range(h.shape[0]):
        top = max(top, h[j] - absorbed[j])
    if not np.isfinite(top):
        return -1
    w = np.empty(h.shape[0])
    for j in range(h.shape[0]):
        w[j] = np.exp(h[j] - absorbed[j] - top)
    n, m = K.shape
    r = np.zeros(n if side == 0 else m)
    if side == 0:
        for i in range(n):
            s = 0.0
            for j in range(m):
                s += K[i, j] * w[j]
            r[i] = s
    else:
        for i in range(n):
            wi = w[i]
            for j in range(m):
                r[j] += K[i, j] * wi
    low = np.inf
    for i in range(r.shape[0]):
        if not r[i] <= 1.0 / sum_min:
            return -1
        low = min(low, r[i])
    if low < sum_min:
        return 0
    for i in range(r.shape[0]):
        lse[i] = np.log(r[i]) + (top - other[i])
    return 1

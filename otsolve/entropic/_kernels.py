"""Numba kernels of log-domain Sinkhorn: fused, parallel log-sum-exp row passes over a cost
matrix or over costs recomputed from point clouds, and the evaluation of the implied plan.

The exponential is :func:`otsolve._fastmath.fast_exp`, which vectorises (libm's does not), and
the loops are compiled with its ``FAST`` flags (sums reordered, multiply-adds fused; inf and NaN
kept): a third faster.
"""
import math

import numpy as np
from numba import njit, prange

from .._cells import gap_cost
from .._costs import SQEUCLIDEAN, cost_chunk, point_costs
from .._fastmath import FAST, fast_exp

CHUNK = 256                 # columns per accumulator block: fits L1, vectorises
SUM_MIN, SUM_MAX = 1e-200, 1e200   # a shifted sum outside this range is redone with the exact max
N_STATS = 5                 # per-row statistics of plan_rows
ROW_BLOCK = 16              # rows per parallel task of plan_rows
GUESS_SLACK = 2.0           # truncated passes: a row whose log-sum comes out this far below its
MAX_REDOS = 4               # guess (which set the cells skipped) is redone, its guess lowered to it


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


PHI_TERMS = tuple((k - 1) / math.factorial(k) for k in range(12, 1, -1))  # of z^12 .. z^2
EXPM1_TERMS = tuple(1.0 / math.factorial(k) for k in range(12, 0, -1))     # of z^12 .. z


@njit(cache=True, inline="always", fastmath=FAST)
def _horner(terms, z):
    """sum_k terms[k] z^(len - 1 - k): the series below, without a call (libm's expm1 is a scalar
    call that stops a loop vectorising); a few ulps for |z| < PHI_SERIES."""
    p = 0.0
    for c in terms:
        p = p * z + c
    return p


@njit(cache=True, inline="always", fastmath=FAST)
def _phi_series(z):
    """z e^z - e^z + 1 = sum_k>=2 (k - 1) z^k / k!, no cancellation (the KL of a plan near
    a b^T, at large reg)."""
    return _horner(PHI_TERMS, z) * z * z


@njit(cache=True, inline="always", fastmath=FAST)
def _expm1_series(z):
    """e^z - 1 = sum_k>=1 z^k / k!."""
    return _horner(EXPM1_TERMS, z) * z


@njit(cache=True, inline="always", fastmath=FAST)
def _plan_chunk(fi, gg, la, lb, ai, bb, cc, inv_reg, out, acc, ui, vv):
    """out_j = exp(la + lb_j + (fi + g_j - c_j) * inv_reg), or out_j * ui * v_j when ``vv`` is not
    empty (out holds the Gibbs kernel and u, v scale it to the plan); per-lane sums of P, P c,
    a b phi(z) (the KL terms), max of fi + g_j - c_j, and P - a b in acc (5, CHUNK), z = (fi +
    g_j - c_j) / reg, ai b_j = a b. One exponential a pair (P of the sum of its logs: no
    underflow of a b): a b phi(z) = P z - P + a b and P - a b by subtractions, or by their series
    where |z| < PHI_SERIES (cancellation there); both computed and one selected, so that the loop
    vectorises."""
    scaled = vv.shape[0] > 0
    for jj in range(cc.shape[0]):
        slack = fi + gg[jj] - cc[jj]
        z = slack * inv_reg
        ab = ai * bb[jj]
        pij = out[jj] * ui * vv[jj] if scaled else fast_exp(la + lb[jj] + z)
        out[jj] = pij
        acc[0, jj] += pij
        acc[1, jj] += pij * cc[jj]
        near = abs(z) < PHI_SERIES
        acc[2, jj] += ab * _phi_series(z) if near else pij * z - pij + ab
        acc[3, jj] = max(acc[3, jj], slack)
        acc[4, jj] += ab * _expm1_series(z) if near else pij - ab


@njit(cache=True, inline="always", fastmath=FAST)
def _reduce_stats(acc, stats):
    stats[0], stats[1], stats[2] = acc[0].sum(), acc[1].sum(), acc[2].sum()
    stats[3] = acc[3].max()
    stats[4] = acc[4].sum()


@njit(cache=True, inline="always", fastmath=FAST)
def _plan_row(src, i, m, f, g, log_a, log_b, b, inv_reg, P, store, scaled, u, v, buf, scratch, acc,
              stats):
    """Row i of :func:`plan_rows`."""
    acc[:] = 0.0
    acc[3, :] = -np.inf
    ui = u[i] if scaled else 1.0
    ai = np.exp(log_a[i])
    for j0 in range(0, m, CHUNK):
        k = min(CHUNK, m - j0)
        _plan_chunk(f[i], g[j0:j0 + k], log_a[i], log_b[j0:j0 + k], ai, b[j0:j0 + k],
                    cost_chunk(src, i, j0, k, buf), inv_reg,
                    P[i, j0:j0 + k] if store else scratch[:k], acc, ui, v[j0:j0 + k] if scaled else v)
    _reduce_stats(acc, stats)


def _plan_rows(src, n, f, g, log_a, log_b, inv_reg, P, stats, u, v):
    """P_ij = a_i b_j exp((f_i + g_j - C_ij) * inv_reg) for the n rows of a cost source (see
    softmin_rows), or u_i P_ij v_j when v is not empty (P holding the Gibbs kernel); stats[i] =
    (sum_j P_ij, sum_j P_ij C_ij, sum_j P_ij log(P_ij / a_i b_j) - P_ij + a_i b_j, max_j f_i + g_j
    - C_ij, sum_j P_ij - a_i b_j). An empty P (0 rows): the statistics only, no plan stored."""
    m = g.shape[0]
    store, scaled = P.shape[0] > 0, v.shape[0] > 0
    b = np.exp(log_b)
    width = min(CHUNK, m)
    for t in prange((n + ROW_BLOCK - 1) // ROW_BLOCK):  # scratch allocated per block of rows:
        buf, scratch = np.empty(width), np.empty(width)  # per row it cost a third of a small pass
        acc = np.empty((N_STATS, width))
        for i in range(t * ROW_BLOCK, min(n, (t + 1) * ROW_BLOCK)):
            _plan_row(src, i, m, f, g, log_a, log_b, b, inv_reg, P, store, scaled, u, v, buf, scratch,
                      acc, stats[i])


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


@njit(cache=True, fastmath=FAST)  # sums reordered: the mat-vecs vectorise (inf and NaN kept)
def scaled_lse(K, side, h, absorbed, other, sum_min, lse, C, inv_reg, max_bad):
    """lse_i <- log (K w)_i + top - other_i (side 0; K^T w for side 1), w = exp(h - absorbed - top),
    top = max(h - absorbed): the kept-kernel soft-min of a small problem in one call (its numpy
    form is ten calls of microseconds each). Lines whose sum is below sum_min (terms may have
    underflowed in K) are redone here in the log domain from the costs C at 1 / eps = inv_reg, if
    they are at most max_bad of all (in numpy that repair cost ten times the mat-vec at reg 1e-4 of
    the costs, where some line underflows in most passes). Returns 1 when done; 0 when some line
    needs the repair and C is empty (0 rows; lse untouched, the caller redoes those lines); -1
    when top is not finite, a sum is above 1 / sum_min or NaN, or more than max_bad lines are low."""
    top = -np.inf
    for j in range(h.shape[0]):
        top = max(top, h[j] - absorbed[j])
    if not np.isfinite(top):
        return -1
    w = np.empty(h.shape[0])
    for j in range(h.shape[0]):
        w[j] = fast_exp(h[j] - absorbed[j] - top)
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
    low = 0
    for i in range(r.shape[0]):
        if not r[i] <= 1.0 / sum_min:
            return -1
        low += r[i] < sum_min
    if low and C.shape[0] == 0:
        return 0
    if low > max_bad * r.shape[0]:
        return -1
    for i in range(r.shape[0]):
        if r[i] >= sum_min:
            lse[i] = np.log(r[i]) + (top - other[i])
        else:
            lse[i] = _log_line(C, side, i, h, inv_reg)
    return 1


@njit(cache=True, fastmath=FAST)
def _log_line(C, side, i, h, inv_reg):
    """log sum_k exp(h_k - C_ik inv_reg) over row i of C (side 0) or column i (side 1), shifted
    by its largest term (-inf for a line of zero weights)."""
    line = C[i] if side == 0 else C[:, i]
    top = -np.inf
    for k in range(line.shape[0]):
        top = max(top, h[k] - line[k] * inv_reg)
    if not np.isfinite(top):
        return top
    s = 0.0
    for k in range(line.shape[0]):
        s += fast_exp(h[k] - line[k] * inv_reg - top)
    return np.log(s) + top


@njit(cache=True, fastmath=FAST)
def flushed_plan(K, u, v, tiny, P):
    """P_ij = u_i K_ij v_j, or 0 below ``tiny``: the conjugate-gradient mat-vecs with such a plan
    make no subnormal numbers, which cost 2-3x per operation (at reg 1e-4 of the costs a third of
    the kernel is below 1e-200 and u spans 60 decades)."""
    n, m = K.shape
    for i in range(n):
        row, out, ui = K[i], P[i], u[i]
        for j in range(m):
            p = ui * row[j] * v[j]
            out[j] = p if p >= tiny else 0.0


@njit(cache=True)
def sparse_plan(K, u, v, keep):
    """The entries P_ij = u_i K_ij v_j >= keep_i of the plan in CSR form (indptr, indices, data),
    and the mass left out of each row and each column (summed, not subtracted: at small reg a
    row's kept mass can equal its sum to every digit)."""
    n, m = K.shape
    indptr, dropped_rows, dropped_cols = np.zeros(n + 1, np.int64), np.zeros(n), np.zeros(m)
    for i in range(n):
        row, ui, kept = K[i], u[i], 0
        for j in range(m):
            p = ui * row[j] * v[j]
            if p >= keep[i] and p > 0.0:
                kept += 1
            else:
                dropped_rows[i] += p
                dropped_cols[j] += p
        indptr[i + 1] = indptr[i] + kept
    indices, data = np.empty(indptr[n], np.int64), np.empty(indptr[n])
    for i in range(n):
        row, ui, k = K[i], u[i], indptr[i]
        for j in range(m):
            p = ui * row[j] * v[j]
            if p >= keep[i] and p > 0.0:
                indices[k], data[k] = j, p
                k += 1
    return indptr, indices, data, dropped_rows, dropped_cols


@njit(cache=True, fastmath=FAST)
def laplacian_system(W, rows, damping):
    """W <- L(W) + damping diag(rows) in place, L(W) the Laplacian of the symmetric couplings W
    (off-diagonal -W_ik, diagonal sum_{k != i} W_ik: no subtraction of nearly equal numbers); a
    row of no mass gets diagonal 1 (its residual and its step are 0)."""
    n = W.shape[0]
    for i in range(n):
        row, s = W[i], 0.0
        for k in range(n):
            if k != i:
                s += row[k]
                row[k] = -row[k]
        row[i] = s + damping * rows[i] if rows[i] > 0.0 else 1.0


@njit(cache=True, fastmath=FAST)
def hessian_product(K, u, w, rows, d, out):
    """out <- M d, M = diag(rows) - diag(u) K diag(w) K^T diag(u) (the Newton system of
    Sinkhorn-Newton, see _newton; w = v^2 / b on the kernel, u = 1 and w = 1 / b on the plan);
    returns the curvature d.M d."""
    n, m = K.shape
    t = np.zeros(m)
    for i in range(n):  # t = (u d) K, row by row (K read once, contiguous)
        udi, row = u[i] * d[i], K[i]
        for j in range(m):
            t[j] += udi * row[j]
    for j in range(m):
        t[j] *= w[j]
    curvature = 0.0
    for i in range(n):
        row, s = K[i], 0.0
        for j in range(m):
            s += row[j] * t[j]
        out[i] = rows[i] * d[i] - u[i] * s
        curvature += d[i] * out[i]
    return curvature


@njit(cache=True, fastmath=FAST)
def newton_cg(K, u, w, rows, diag, res, stop, cg_max, x):
    """Jacobi-preconditioned conjugate gradients on M x = res, M = diag(rows) - diag(u) K diag(w)
    K^T diag(u) (the Newton system of Sinkhorn-Newton, see _newton), from x = 0 (in x; res is
    overwritten by the residual). Stops when |res| <= stop, at cg_max iterations, or when the
    curvature of a direction is not positive (rounding at the null space). Returns the iterations.
    One compiled call: in numpy an iteration was a dozen calls, several times its two mat-vecs at
    n <= 1000. Serial: the solver runs numpy's BLAS on one thread as well."""
    n = K.shape[0]
    x[:] = 0.0
    z = res / diag
    d = z.copy()
    rz = res @ z
    Md = np.empty(n)
    for k in range(1, cg_max + 1):
        curvature = hessian_product(K, u, w, rows, d, Md)
        if not curvature > 0.0:
            return k
        alpha = rz / curvature
        rr = 0.0
        for i in range(n):
            x[i] += alpha * d[i]
            res[i] -= alpha * Md[i]
            rr += res[i] * res[i]
        if np.sqrt(rr) <= stop:
            return k
        rz_old, rz = rz, 0.0
        for i in range(n):
            z[i] = res[i] / diag[i]
            rz += res[i] * z[i]
        beta = rz / rz_old
        for i in range(n):
            d[i] = z[i] + beta * d[i]
    return cg_max


@njit(cache=True, fastmath=FAST)
def newton_direction(K, u, v, inv_b, a, rows, reg, tiny, P, forcing, diag_min, cg_max, x):
    """The Newton system of Sinkhorn-Newton (see _newton), M x = reg (a - rows) with M = diag(rows)
    - P diag(1/b) P^T for the plan P = diag(u) K diag(v), solved by :func:`newton_cg` to a relative
    residual ``forcing`` with the Jacobi preconditioner diag(M) (entries below diag_min x rows
    replaced by rows, or 1 on empty rows). Unless P is empty (0 rows) the plan is formed in it,
    entries below ``tiny`` flushed to 0 (see :func:`flushed_plan`), and CG runs on it; else on K.
    One compiled call: its numpy form cost as much as the CG iterations of a small problem.
    Returns the CG iterations; x receives the direction."""
    n, m = K.shape
    if P.shape[0] > 0:
        flushed_plan(K, u, v, tiny, P)
        M, scale, w = P, np.ones(n), inv_b
    else:
        M, scale, w = K, u, v * v * inv_b  # P diag(1/b) P^T = diag(u) K diag(w) K^T diag(u)
    diag, res = np.empty(n), np.empty(n)
    norm = 0.0
    for i in range(n):
        row, s = M[i], 0.0
        for j in range(m):
            s += row[j] * row[j] * w[j]
        d = rows[i] - scale[i] * scale[i] * s
        diag[i] = d if d > diag_min * rows[i] else (rows[i] if rows[i] > 0.0 else 1.0)
        res[i] = reg * (a[i] - rows[i])
        norm += res[i] * res[i]
    return newton_cg(M, scale, w, rows, diag, res, forcing * np.sqrt(norm), cg_max, x)


@njit(cache=True, fastmath=FAST)
def scaled_softmin(K, side, pot, log_w, eps, absorbed, other, sum_min, T, C, max_bad):
    """T <- -eps log sum_j w_j exp((pot_j - C_ij) / eps) by :func:`scaled_lse` with h = log w +
    pot / eps, T on entry giving the shift: the whole soft-min of a small problem in one call
    (in numpy its arithmetic around the mat-vec was four more calls). Returns as scaled_lse; T is
    untouched unless 1."""
    h = log_w + pot / eps
    lse = T / -eps
    done = scaled_lse(K, side, h, absorbed, other, sum_min, lse, C, 1.0 / eps, max_bad)
    if done == 1:
        for i in range(T.shape[0]):
            T[i] = -eps * lse[i]
    return done


@njit(cache=True, fastmath=FAST)
def scaled_iteration(K, hF, hG, f, g, log_a, log_b, a, eps, omega, sum_min, clip, T_f, T_g, f_new, g_new, C,
                     max_bad):
    """One balanced Sinkhorn iteration at the final eps with the kept kernel (see
    :func:`scaled_softmin`, K_ij = exp(hF_i + hG_j - C_ij / eps)): T_f <- softmin(g), the row error
    of (f, g) (:func:`marginal_error`), f_new = (1 - omega) f + omega T_f, T_g <- softmin(f_new),
    g_new likewise: an iteration of a small problem in one call (in Python it was a dozen calls,
    several times its two mat-vecs). Returns the error, or -1 when a soft-min leaves the kept
    kernel's safe range (T_f, T_g hold finished soft-mins only: the caller redoes the iteration)."""
    if scaled_softmin(K, 0, g, log_b, eps, hG, hF, sum_min, T_f, C, max_bad) != 1:
        return -1.0
    err = marginal_error(a, f, T_f, eps, clip)
    for i in range(f.shape[0]):
        f_new[i] = T_f[i] if omega == 1.0 else (1.0 - omega) * f[i] + omega * T_f[i]
    if scaled_softmin(K, 1, f_new, log_a, eps, hF, hG, sum_min, T_g, C, max_bad) != 1:
        return -1.0
    for j in range(g.shape[0]):
        g_new[j] = T_g[j] if omega == 1.0 else (1.0 - omega) * g[j] + omega * T_g[j]
    return err


@njit(cache=True, fastmath=FAST)
def newton_point(K, hF, hG, C, f, log_a, log_b, a, b, eps, sum_min, max_bad, drift_max, T_g, u, v, rows):
    """A trial point of the Newton phase with the kept kernel K_ij = exp(hF_i + hG_j - C_ij / eps):
    T_g <- softmin(f) (:func:`scaled_softmin`), the plan diag(u) K diag(v) of (f, T_g) (u = a
    exp(f / eps - hF), v = b exp(T_g / eps - hG), as MatrixCost.plan_operator), its row sums in
    ``rows``; returns (L1 row error, a.f + b.g, L1 column error), or a row error of -1 when the
    soft-min fails or a scaling's |log| exceeds drift_max (T_g then may hold the soft-min). One
    call: in numpy a trial cost ten calls, more than the dense Newton step of n = 64."""
    if scaled_softmin(K, 1, f, log_a, eps, hF, hG, sum_min, T_g, C, max_bad) != 1:
        return -1.0, 0.0, 0.0
    n, m = K.shape
    inv_reg, drift = 1.0 / eps, 0.0
    for i in range(n):
        if log_a[i] > -np.inf:  # zero weights aside: their lines of the plan are 0
            drift = max(drift, abs(f[i] * inv_reg - hF[i]))
    for j in range(m):
        if log_b[j] > -np.inf:
            drift = max(drift, abs(T_g[j] * inv_reg - hG[j]))
    if not drift <= drift_max:
        return -1.0, 0.0, 0.0
    for i in range(n):
        u[i] = np.exp(log_a[i] + f[i] * inv_reg - hF[i])
    for j in range(m):
        v[j] = np.exp(log_b[j] + T_g[j] * inv_reg - hG[j])
    cols = np.zeros(m)
    err, phi = 0.0, 0.0
    for i in range(n):
        row, ui, s = K[i], u[i], 0.0
        for j in range(m):
            s += row[j] * v[j]
            cols[j] += ui * row[j]
        rows[i] = ui * s
        err += abs(rows[i] - a[i])
        phi += a[i] * f[i]
    col_err = 0.0
    for j in range(m):
        col_err += abs(v[j] * cols[j] - b[j])
        phi += b[j] * T_g[j]
    return err, phi, col_err


@njit(cache=True, fastmath=FAST)
def marginal_error(a, f, T, eps, clip):
    """sum_i |a_i expm1(min((f_i - T_i) / eps, clip))|: the L1 error of the marginal a exp((f -
    T) / eps) of the plan of (f, g), T the soft-min of g."""
    err = 0.0
    for i in range(a.shape[0]):
        err += abs(a[i] * np.expm1(min((f[i] - T[i]) / eps, clip)))
    return err
# Truncated passes (Schmitzer 2019, kernel truncation). Both clouds are sorted into k-d cells with
# bounding boxes. Row i has a guess ref_i of its log-sum (the previous pass); a term h_j - C_ij
# inv_reg more than theta below ref_i is skipped. Bounds decide without computing the terms:
# first for a block of rows (one cell) against a column cell, then for each row against the
# column cells left. The skipped terms are bounded by count * exp(bound) per cell and summed per
# row: a certified bound, whatever the guess. For squared Euclidean costs the bounds are linear
# (h varies by ~10 across a cell at small reg: a box bound with max h would keep far too much):
# w_j = h_j reg - |y_j|^2 <= <s, y_j> + R on a column cell and u_i = -ref_i reg - |x_i|^2 <=
# <t, x_i> + Q on a row cell (slopes fitted by least squares, R and Q the largest residuals), so
# h_j - |x_i - y_j|^2 inv_reg - ref_i = (w_j + u_i + 2 <x_i, y_j>) inv_reg, bounded over the boxes.


@njit(cache=True, inline="always")
def _box_cost(lo1, hi1, lo2, hi2, gaps, code, p):
    """A lower bound of the cost between two boxes (a point is a box with lo = hi)."""
    for k in range(gaps.shape[0]):
        gaps[k] = max(lo1[k] - hi2[k], lo2[k] - hi1[k], 0.0)
    return gap_cost(gaps, code, p)


@njit(cache=True)
def _fit_linear(pts, vals, slope):
    """slope <- per-coordinate least-squares slopes of vals over the points pts (k, d); returns R
    with vals <= <slope, pt> + R on every point (+inf if a value is +inf or NaN; -inf values are
    left out, they satisfy any bound)."""
    k, d = pts.shape
    live, mean = 0, 0.0
    centre = np.zeros(d)
    for r in range(k):
        if not vals[r] < np.inf:
            slope[:] = 0.0
            return np.inf
        if vals[r] > -np.inf:
            live += 1
            mean += vals[r]
            for q in range(d):
                centre[q] += pts[r, q]
    slope[:] = 0.0
    if live == 0:
        return -np.inf
    mean /= live
    centre /= live
    for q in range(d):
        num, den = 0.0, 0.0
        for r in range(k):
            if vals[r] > -np.inf:
                num += (pts[r, q] - centre[q]) * (vals[r] - mean)
                den += (pts[r, q] - centre[q]) ** 2
        slope[q] = num / den if den > 0.0 else 0.0
    top = -np.inf
    for r in range(k):
        res = vals[r]
        for q in range(d):
            res -= slope[q] * pts[r, q]
        top = max(top, res)
    return top


@njit(cache=True, parallel=True)
def _column_bounds(h, yT, y_ptr, inv_reg, code):
    """Per column cell: max h and (squared Euclidean) lin[e] = (s, R) with h_j reg - |y_j|^2 <=
    <s, y_j> + R; and the size of the largest cell."""
    ncy, d = y_ptr.shape[0] - 1, yT.shape[0]
    h_max, lin = np.full(ncy, -np.inf), np.zeros((ncy, d + 1))
    widest = 1
    for e in range(ncy):
        widest = max(widest, y_ptr[e + 1] - y_ptr[e])
    for e in prange(ncy):
        j0, j1 = y_ptr[e], y_ptr[e + 1]
        w = np.empty(j1 - j0)
        for j in range(j0, j1):
            h_max[e] = max(h_max[e], h[j])
            sq = 0.0
            for q in range(d):
                sq += yT[q, j] * yT[q, j]
            w[j - j0] = h[j] / inv_reg - sq
        if code == SQEUCLIDEAN:
            lin[e, d] = _fit_linear(yT[:, j0:j1].T, w, lin[e, :d])
    return h_max, lin, widest


@njit(cache=True, inline="always")
def _row_cell_fit(x, r0, r1, ref, inv_reg, slope):
    """Q with u_i = -ref_i reg - |x_i|^2 <= <slope, x_i> + Q over the rows r0..r1 - 1."""
    u = np.empty(r1 - r0)
    for r in range(r1 - r0):
        sq = 0.0
        for q in range(x.shape[1]):
            sq += x[r0 + r, q] * x[r0 + r, q]
        u[r] = -ref[r] / inv_reg - sq
    return _fit_linear(x[r0:r1], u, slope)


@njit(cache=True, inline="always")
def _kept_cells(lo, hi, t, Q, low, y_lo, y_hi, y_ptr, h_max, lin, inv_reg, theta, code, p, gaps, kept):
    """kept[:nk] = the column cells where some row of the cell (box lo..hi, u <= <t, x> + Q, log-sum
    guesses >= low) may have a term within theta of its guess; returns nk and the sum over the
    others of count * exp(bound of term - guess), the same for every row of the cell."""
    nk, dropped, d = 0, 0.0, lo.shape[0]
    for e in range(h_max.shape[0]):
        rel = h_max[e] - _box_cost(lo, hi, y_lo[e], y_hi[e], gaps, code, p) * inv_reg - low
        if code == SQEUCLIDEAN and rel > -theta and rel < np.inf:
            s = Q + lin[e, d]
            for q in range(d):
                cx, hx = 0.5 * (lo[q] + hi[q]), 0.5 * (hi[q] - lo[q])
                cy, hy = 0.5 * (y_lo[e, q] + y_hi[e, q]), 0.5 * (y_hi[e, q] - y_lo[e, q])
                s += (lin[e, q] * cy + t[q] * cx + 2.0 * cx * cy + abs(lin[e, q] + 2.0 * cx) * hy
                      + abs(t[q] + 2.0 * cy) * hx + 2.0 * hx * hy)
            rel = min(rel, s * inv_reg)
        if rel >= -theta:
            kept[nk] = e
            nk += 1
        else:
            dropped += (y_ptr[e + 1] - y_ptr[e]) * np.exp(rel)
    return nk, dropped


@njit(cache=True, inline="always")
def _point_bound(xi, e, y_lo, y_hi, h_max, lin, inv_reg, code, p, gaps):
    """A bound of h_j - C(x_i, y_j) inv_reg over column cell e: the box bound, and for squared
    Euclidean costs the tighter of it and the linear one."""
    bound = h_max[e] - _box_cost(xi, xi, y_lo[e], y_hi[e], gaps, code, p) * inv_reg
    if code != SQEUCLIDEAN or not np.isfinite(bound):
        return bound
    d = xi.shape[0]
    s, xx = lin[e, d], 0.0
    for q in range(d):
        v = 2.0 * xi[q] + lin[e, q]
        s += v * 0.5 * (y_lo[e, q] + y_hi[e, q]) + abs(v) * 0.5 * (y_hi[e, q] - y_lo[e, q])
        xx += xi[q] * xi[q]
    return min(bound, (s - xx) * inv_reg)


@njit(cache=True, inline="always", fastmath=FAST)
def _run_sum(x, i, yT, j0, j1, h, inv_reg, shift, code, p, buf, s, top_only):
    """s + sum_j exp(h_j - C_ij inv_reg - shift) over the columns j0..j1 - 1 (or the max of s and
    the exponents, top_only), in runs of CHUNK costs."""
    for c0 in range(j0, j1, CHUNK):
        k = min(CHUNK, j1 - c0)
        cost = point_costs(x, i, yT, c0, k, code, p, buf)
        hh = h[c0:c0 + k]
        if top_only:
            for jj in range(k):
                s = max(s, hh[jj] - cost[jj] * inv_reg)
        else:
            for jj in range(k):
                s += fast_exp(hh[jj] - cost[jj] * inv_reg - shift)
    return s


@njit(cache=True, inline="always", fastmath=FAST)
def _row_sum(x, i, yT, y_lo, y_hi, y_ptr, h, h_max, lin, inv_reg, ref, theta, shift, kept, nk, code, p, gaps,
             buf, top_only):
    """Over the kept cells whose bound against x_i reaches ref - theta: sum_j exp(h_j - C_ij
    inv_reg - shift), or (top_only) max_j h_j - C_ij inv_reg; and over the cells skipped here,
    sum count * exp(bound - ref). Adjacent cells (neighbours in the k-d order, mostly in space
    too) are computed as one run of columns, so that short cells cost no more than long rows."""
    xi = x[i]
    s = -np.inf if top_only else 0.0
    dropped = 0.0
    run0, run1 = 0, 0
    for t in range(nk):
        e = kept[t]
        rel = _point_bound(xi, e, y_lo, y_hi, h_max, lin, inv_reg, code, p, gaps) - ref
        if rel < -theta:
            dropped += (y_ptr[e + 1] - y_ptr[e]) * np.exp(rel)
            continue
        if y_ptr[e] != run1:
            s = _run_sum(x, i, yT, run0, run1, h, inv_reg, shift, code, p, buf, s, top_only)
            run0 = y_ptr[e]
        run1 = y_ptr[e + 1]
    s = _run_sum(x, i, yT, run0, run1, h, inv_reg, shift, code, p, buf, s, top_only)
    return s, dropped


@njit(cache=True, parallel=True, fastmath=FAST)
def truncated_softmin(x, x_ptr, x_lo, x_hi, yT, y_ptr, y_lo, y_hi, code, p, h, inv_reg, theta, lse,
                      log_dropped):
    """lse[i] <- log sum_j exp(h_j - C_ij inv_reg) over the pairs kept (see above), from the
    guesses in ``lse`` (the previous pass); log_dropped[i] <- log of a bound of the sum of the
    terms skipped (-inf if none). Rows and columns are sorted by cell (x_ptr, y_ptr) and
    cost_chunk's point source is (x, -, yT, code, p). A row whose log-sum comes out more than
    GUESS_SLACK below its guess is redone from it (the guess skipped too much)."""
    ncx, d = x_ptr.shape[0] - 1, x.shape[1]
    h_max, lin, widest = _column_bounds(h, yT, y_ptr, inv_reg, code)
    for c in prange(ncx):
        r0, r1 = x_ptr[c], x_ptr[c + 1]
        gaps, buf, kept, t = np.empty(d), np.empty(CHUNK), np.empty(h_max.shape[0], np.int64), np.empty(d)
        ref = lse[r0:r1].copy()
        for r in range(r1 - r0):
            ref[r] = ref[r] if np.isfinite(ref[r]) else -np.inf
        out, drop = np.empty(r1 - r0), np.empty(r1 - r0)
        for attempt in range(MAX_REDOS + 1):
            Q = _row_cell_fit(x, r0, r1, ref, inv_reg, t)
            nk, cell_drop = _kept_cells(x_lo[c], x_hi[c], t, Q, ref.min(), y_lo, y_hi, y_ptr, h_max, lin, inv_reg,
                                        theta, code, p, gaps, kept)
            redo = False
            for r in range(r1 - r0):
                i, shift = r0 + r, ref[r]
                s, dropped = 0.0, 0.0
                if np.isfinite(shift):
                    s, dropped = _row_sum(x, i, yT, y_lo, y_hi, y_ptr, h, h_max, lin, inv_reg, ref[r], theta,
                                          shift, kept, nk, code, p, gaps, buf, False)
                if not SUM_MIN <= s <= SUM_MAX:  # no guess, or a poor one: shift by the largest term
                    shift, dropped = _row_sum(x, i, yT, y_lo, y_hi, y_ptr, h, h_max, lin, inv_reg, ref[r], theta,
                                              0.0, kept, nk, code, p, gaps, buf, True)
                    s = 0.0
                    if np.isfinite(shift):
                        s, dropped = _row_sum(x, i, yT, y_lo, y_hi, y_ptr, h, h_max, lin, inv_reg, ref[r], theta,
                                              shift, kept, nk, code, p, gaps, buf, False)
                out[r] = np.log(s) + shift if s > 0.0 else -np.inf
                total = dropped + cell_drop
                drop[r] = ref[r] + np.log(total) if total > 0.0 else -np.inf
                if out[r] < ref[r] - GUESS_SLACK:
                    ref[r], redo = out[r], True
            if not redo:
                break
        for r in range(r1 - r0):
            lse[r0 + r], log_dropped[r0 + r] = out[r], drop[r]


@njit(cache=True, inline="always", fastmath=FAST)
def _plan_run(x, i, yT, j0, j1, fi, g, la, log_b, ai, b, code, p, inv_reg, buf, scratch, acc, no_scaling):
    """:func:`_plan_chunk` of row i over the columns j0..j1 - 1, in chunks of CHUNK costs from
    coordinates (a run of adjacent cells: cell by cell, short cells cost 6 soft-min passes)."""
    for c0 in range(j0, j1, CHUNK):
        k = min(CHUNK, j1 - c0)
        _plan_chunk(fi, g[c0:c0 + k], la, log_b[c0:c0 + k], ai, b[c0:c0 + k],
                    point_costs(x, i, yT, c0, k, code, p, buf), inv_reg, scratch[:k], acc, 1.0, no_scaling)


@njit(cache=True, parallel=True, fastmath=FAST)
def truncated_plan_rows(x, x_ptr, x_lo, x_hi, yT, y_ptr, y_lo, y_hi, code, p, f, g, log_a, log_b, inv_reg,
                        theta, stats, log_dropped):
    """stats[i] as in :func:`plan_rows` for the plan of (f, g) restricted to the pairs kept (the
    rows' guesses of the log-sum are -f_i inv_reg, exact at the solution), the skipped pairs
    counted with P_ij = 0 (their a_i b_j enters the KL and excess terms); log_dropped[i] <- log of
    a bound of the row's skipped mass sum_j P_ij."""
    ncx, d = x_ptr.shape[0] - 1, x.shape[1]
    h = log_b + g * inv_reg
    h_max, lin, _ = _column_bounds(h, yT, y_ptr, inv_reg, code)
    b = np.exp(log_b)
    b_sum = b.sum()
    cell_b = np.zeros(h_max.shape[0])
    for e in range(h_max.shape[0]):
        cell_b[e] = b[y_ptr[e]:y_ptr[e + 1]].sum()
    no_scaling = np.empty(0)
    for c in prange(ncx):
        r0, r1 = x_ptr[c], x_ptr[c + 1]
        gaps, buf, kept, t = np.empty(d), np.empty(CHUNK), np.empty(h_max.shape[0], np.int64), np.empty(d)
        scratch, acc = np.empty(CHUNK), np.empty((N_STATS, CHUNK))
        ref = -f[r0:r1] * inv_reg
        Q = _row_cell_fit(x, r0, r1, ref, inv_reg, t)
        nk, cell_drop = _kept_cells(x_lo[c], x_hi[c], t, Q, ref.min(), y_lo, y_hi, y_ptr, h_max, lin, inv_reg, theta,
                                    code, p, gaps, kept)
        for i in range(r0, r1):
            acc[:] = 0.0
            acc[3, :] = -np.inf
            xi, dropped, b_kept, ai = x[i], 0.0, 0.0, np.exp(log_a[i])
            run0, run1 = 0, 0  # adjacent kept cells form one run of columns, as in _row_sum
            for q in range(nk):
                e = kept[q]
                rel = _point_bound(xi, e, y_lo, y_hi, h_max, lin, inv_reg, code, p, gaps) - ref[i - r0]
                if rel < -theta:
                    dropped += (y_ptr[e + 1] - y_ptr[e]) * np.exp(rel)
                    continue
                b_kept += cell_b[e]
                if y_ptr[e] != run1:
                    _plan_run(x, i, yT, run0, run1, f[i], g, log_a[i], log_b, ai, b, code, p, inv_reg, buf, scratch,
                              acc, no_scaling)
                    run0 = y_ptr[e]
                run1 = y_ptr[e + 1]
            _plan_run(x, i, yT, run0, run1, f[i], g, log_a[i], log_b, ai, b, code, p, inv_reg, buf, scratch, acc,
                      no_scaling)
            _reduce_stats(acc, stats[i])
            ab_skipped = np.exp(log_a[i]) * max(b_sum - b_kept, 0.0)
            stats[i, 2] += ab_skipped   # a b phi(-inf) = a b
            stats[i, 4] -= ab_skipped   # P - a b = -a b
            total = dropped + cell_drop
            log_dropped[i] = log_a[i] + np.log(total) if total > 0.0 else -np.inf

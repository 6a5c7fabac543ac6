"""Numba kernels of log-domain Sinkhorn: fused, parallel log-sum-exp row passes over a cost
matrix or over costs recomputed from point clouds, and the evaluation of the implied plan.

The exponential is :func:`otsolve._fastmath.fast_exp`, which vectorises (libm's does not), and
the loops are compiled with its ``FAST`` flags (sums reordered, multiply-adds fused; inf and NaN
kept): a third faster.
"""
import math

import numpy as np
from numba import njit, prange

from .._costs import cost_chunk
from .._fastmath import FAST, fast_exp

CHUNK = 256                 # columns per accumulator block: fits L1, vectorises
SUM_MIN, SUM_MAX = 1e-200, 1e200   # a shifted sum outside this range is redone with the exact max
N_STATS = 5                 # per-row statistics of plan_rows
ROW_BLOCK = 16              # rows per parallel task of plan_rows


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


@njit(cache=True, parallel=True, fastmath=FAST)
def softmin_rows(src, n, h, inv_reg, lse, K):
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


@njit(cache=True, parallel=True, fastmath=FAST)
def softmin_cols(C, h, inv_reg, lse, K):
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
def _phi(z, ez):
    """z e^z - e^z + 1 (P log(P/ab) - P + ab = ab phi(z) for P = ab e^z, ez = e^z), by its
    series where |z| < PHI_SERIES."""
    return _phi_series(z) if abs(z) < PHI_SERIES else z * ez - ez + 1.0


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
        em1 = ez - 1.0 if abs(z) >= PHI_SERIES else _expm1_series(z)
        acc[4, jj] += ab * em1 if ab > 0.0 else 0.0


@njit(cache=True, inline="always", fastmath=FAST)
def _scaled_plan_chunk(fi, gg, ai, bb, cc, inv_reg, out, acc, ui, vv):
    """:func:`_plan_chunk` when ``out`` holds the Gibbs kernel: P = u K v and no exponential
    (a b phi(z) = P z - P + a b, P - a b by a subtraction, the series where |z| < PHI_SERIES;
    both forms computed and one selected, so that the loop vectorises): the evaluation of a
    small problem cost as much as all its iterations."""
    for jj in range(cc.shape[0]):
        slack = fi + gg[jj] - cc[jj]
        z = slack * inv_reg
        ab = ai * bb[jj]
        pij = out[jj] * ui * vv[jj]
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
        if scaled and store:
            _scaled_plan_chunk(f[i], g[j0:j0 + k], ai, b[j0:j0 + k], cost_chunk(src, i, j0, k, buf),
                               inv_reg, P[i, j0:j0 + k], acc, ui, v[j0:j0 + k])
            continue
        _plan_chunk(f[i], g[j0:j0 + k], log_a[i], log_b[j0:j0 + k],
                    cost_chunk(src, i, j0, k, buf), inv_reg,
                    P[i, j0:j0 + k] if store else scratch[:k], acc, ui, v[j0:j0 + k] if scaled else v)
    _reduce_stats(acc, stats)


@njit(cache=True, parallel=True, fastmath=FAST)
def plan_rows(src, n, f, g, log_a, log_b, inv_reg, P, stats, u, v):
    """P_ij = a_i b_j exp((f_i + g_j - C_ij) * inv_reg) for the n rows of a cost source (see
    softmin_rows), or u_i P_ij v_j when v is not empty (P holding the Gibbs kernel); stats[i] =
    (sum_j P_ij, sum_j P_ij C_ij, sum_j P_ij log(P_ij / a_i b_j) - P_ij + a_i b_j, max_j f_i + g_j
    - C_ij, sum_j P_ij - a_i b_j). An empty P (0 rows): the statistics only, no plan stored."""
    m = g.shape[0]
    store, scaled = P.shape[0] > 0, v.shape[0] > 0
    b = np.exp(log_b) if scaled else log_b
    width = min(CHUNK, m)
    for t in prange((n + ROW_BLOCK - 1) // ROW_BLOCK):  # scratch allocated per block of rows:
        buf, scratch = np.empty(width), np.empty(width)  # per row it cost a third of a small pass
        acc = np.empty((N_STATS, width))
        for i in range(t * ROW_BLOCK, min(n, (t + 1) * ROW_BLOCK)):
            _plan_row(src, i, m, f, g, log_a, log_b, b, inv_reg, P, store, scaled, u, v, buf, scratch,
                      acc, stats[i])


@njit(cache=True, parallel=True, fastmath=FAST)
def square_scaled(K, u, v):
    """K_ij <- (u_i K_ij v_j)^2 in place: the Gibbs kernel at half the reg, scalings absorbed."""
    n, m = K.shape
    for i in prange(n):
        row, ui = K[i], u[i]
        for j in range(m):
            z = ui * row[j] * v[j]
            row[j] = z * z


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


@njit(cache=True, fastmath=FAST)
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


@njit(cache=True, fastmath=FAST)
def newton_cg(K, u, w, rows, diag, res, stop, cg_max, x):
    """Jacobi-preconditioned conjugate gradients on M x = res, M = diag(rows) - diag(u) K diag(w)
    K^T diag(u) (the Newton system of Sinkhorn-Newton, see _newton), from x = 0 (in x; res is
    overwritten by the residual). Stops when |res| <= stop, at cg_max iterations, or when the
    curvature of a direction is not positive (rounding at the null space). Returns the iterations.
    One compiled call: in numpy an iteration was a dozen calls, several times its two mat-vecs at
    n <= 1000. Serial: the solver runs numpy's BLAS on one thread as well."""
    n, m = K.shape
    x[:] = 0.0
    z = res / diag
    d = z.copy()
    rz = res @ z
    ud, t, Md = np.empty(n), np.empty(m), np.empty(n)
    for k in range(1, cg_max + 1):
        for i in range(n):
            ud[i] = u[i] * d[i]
        t[:] = 0.0
        for i in range(n):  # t = (u d) K, row by row (K read once, contiguous)
            udi, row = ud[i], K[i]
            for j in range(m):
                t[j] += udi * row[j]
        for j in range(m):
            t[j] *= w[j]
        curvature = 0.0
        for i in range(n):  # Md = rows d - u (K t)
            row, s = K[i], 0.0
            for j in range(m):
                s += row[j] * t[j]
            Md[i] = rows[i] * d[i] - u[i] * s
            curvature += d[i] * Md[i]
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
def scaled_softmin(K, side, pot, log_w, eps, absorbed, other, sum_min, T):
    """T <- -eps log sum_j w_j exp((pot_j - C_ij) / eps) by :func:`scaled_lse` with h = log w +
    pot / eps, T on entry giving the shift: the whole soft-min of a small problem in one call
    (in numpy its arithmetic around the mat-vec was four more calls). Returns as scaled_lse; T is
    untouched unless 1."""
    h = log_w + pot / eps
    lse = T / -eps
    done = scaled_lse(K, side, h, absorbed, other, sum_min, lse)
    if done == 1:
        for i in range(T.shape[0]):
            T[i] = -eps * lse[i]
    return done


@njit(cache=True, fastmath=FAST)
def scaled_iteration(K, hF, hG, f, g, log_a, log_b, a, eps, omega, sum_min, clip, T_f, T_g, f_new, g_new):
    """One balanced Sinkhorn iteration at the final eps with the kept kernel (see
    :func:`scaled_softmin`, K_ij = exp(hF_i + hG_j - C_ij / eps)): T_f <- softmin(g), the row error
    of (f, g) (:func:`marginal_error`), f_new = (1 - omega) f + omega T_f, T_g <- softmin(f_new),
    g_new likewise: an iteration of a small problem in one call (in Python it was a dozen calls,
    several times its two mat-vecs). Returns the error, or -1 when a soft-min leaves the kept
    kernel's safe range (T_f, T_g hold finished soft-mins only: the caller redoes the iteration)."""
    if scaled_softmin(K, 0, g, log_b, eps, hG, hF, sum_min, T_f) != 1:
        return -1.0
    err = marginal_error(a, f, T_f, eps, clip)
    for i in range(f.shape[0]):
        f_new[i] = T_f[i] if omega == 1.0 else (1.0 - omega) * f[i] + omega * T_f[i]
    if scaled_softmin(K, 1, f_new, log_a, eps, hF, hG, sum_min, T_g) != 1:
        return -1.0
    for j in range(g.shape[0]):
        g_new[j] = T_g[j] if omega == 1.0 else (1.0 - omega) * g[j] + omega * T_g[j]
    return err


@njit(cache=True, fastmath=FAST)
def marginal_error(a, f, T, eps, clip):
    """sum_i |a_i expm1(min((f_i - T_i) / eps, clip))|: the L1 error of the marginal a exp((f -
    T) / eps) of the plan of (f, g), T the soft-min of g."""
    err = 0.0
    for i in range(a.shape[0]):
        err += abs(a[i] * np.expm1(min((f[i] - T[i]) / eps, clip)))
    return err

"""Numba kernels of the semi-dual stochastic solvers (Genevay, Cuturi, Peyre & Bach 2016).

Every kernel works on a target potential ``g`` (m,) and the log-weights ``log_b`` (``-inf`` for a
zero-weight target, which then receives no mass). ``reg == 0`` selects the hard c-transform
(argmin) in place of the soft-min, so one code path serves every epsilon.
"""
import math

import numpy as np
from numba import njit, prange

from .._costs import cost_row
from .._fastmath import FAST, fast_exp as _exp, fast_log as _log


@njit(cache=True, inline="always")
def _max(x):
    """max of x, by four running maxima: a single one waits on each comparison (3x slower)."""
    m = x.shape[0]
    t0 = t1 = t2 = t3 = -np.inf
    j = 0
    while j + 4 <= m:
        t0, t1, t2, t3 = max(t0, x[j]), max(t1, x[j + 1]), max(t2, x[j + 2]), max(t3, x[j + 3])
        j += 4
    for k in range(j, m):
        t0 = max(t0, x[k])
    return max(max(t0, t1), max(t2, t3))


@njit(cache=True, inline="always")
def _fill_exp(out):
    """out <- exp(out - max(out)); returns the max and the sum of the new out."""
    top = _max(out)
    s = 0.0
    for j in range(out.shape[0]):
        e = _exp(out[j] - top)
        out[j] = e
        s += e
    return top, s


@njit(cache=True, inline="always")
def _fill_softmax(out):
    """out <- softmax(out); returns the log-sum-exp of the input (shifted by its max)."""
    top, s = _fill_exp(out)
    inv = 1.0 / s
    for j in range(out.shape[0]):
        out[j] *= inv
    return top + math.log(s)


@njit(cache=True, inline="always")
def _fill_argmin(out):
    """out <- indicator of the argmin of out (first one); returns the min."""
    m = out.shape[0]
    best, arg = np.inf, 0
    for j in range(m):
        if out[j] < best:
            best, arg = out[j], j
    for j in range(m):
        out[j] = 0.0
    out[arg] = 1.0
    return best


@njit(cache=True, inline="always")
def row_softmax(src, i, g, log_b, reg, out, cbuf):
    """out <- softmax_j(log b_j + (g_j - C_ij) / reg) (argmin indicator of C_ij - g_j when reg = 0)
    for row i of a cost source (a matrix, or point clouds (x, y, code, p) whose costs fill
    ``cbuf``, see :func:`otsolve._costs.cost_row`); returns the c-transform
    -reg * log sum_j b_j exp((g_j - C_ij) / reg) (min_j C_ij - g_j)."""
    c = cost_row(src, i, cbuf)
    m = out.shape[0]
    if reg == 0.0:
        for j in range(m):
            out[j] = c[j] - g[j] if log_b[j] > -np.inf else np.inf
        return _fill_argmin(out)
    for j in range(m):
        out[j] = log_b[j] + (g[j] - c[j]) / reg
    return -reg * _fill_softmax(out)


@njit(cache=True, parallel=True, fastmath=FAST, error_model="numpy")
def evaluate(src, n, a, g, log_b, reg, f, colsum, linear):
    """f_i <- c-transform of g at row i of a cost source (see row_softmax); colsum (t, m) <-
    per-chunk sums of a_i softmax_i, so that colsum.sum(0) is the second marginal of the implied
    plan P_ij = a_i softmax_ij; linear_i <- sum_j P_ij C_ij unless ``linear`` is empty."""
    m = g.shape[0]
    chunks = colsum.shape[0]
    with_linear = linear.shape[0] > 0
    for t in prange(chunks):
        buf, cbuf = np.empty(m), np.empty(m)
        acc = colsum[t]
        acc[:] = 0.0
        for i in range(t * n // chunks, (t + 1) * n // chunks):
            if reg == 0.0:
                f[i] = row_softmax(src, i, g, log_b, reg, buf, cbuf)
                w = a[i]
            else:  # row_softmax without its normalising pass, folded into the weight
                c = cost_row(src, i, cbuf)
                for j in range(m):
                    buf[j] = log_b[j] + (g[j] - c[j]) / reg
                top, s = _fill_exp(buf)
                f[i] = -reg * (top + math.log(s))
                w = a[i] / s
            if w > 0.0:
                for j in range(m):
                    acc[j] += w * buf[j]
            if with_linear:
                c = cost_row(src, i, cbuf)
                lin = 0.0
                for j in range(m):
                    lin += buf[j] * c[j]
                linear[i] = w * lin


@njit(cache=True, parallel=True, fastmath=FAST, error_model="numpy")
def implied_plan(C, a, g, log_b, reg, P):
    """P_ij = a_i softmax_j(log b_j + (g_j - C_ij) / reg) (argmin assignment when reg = 0)."""
    n = C.shape[0]
    for i in prange(n):
        row_softmax(C, i, g, log_b, reg, P[i], P[i, :0])
        for j in range(C.shape[1]):
            P[i, j] *= a[i]


@njit(cache=True, parallel=True, fastmath=FAST, error_model="numpy")
def rounding_rows(C, a, f, g, log_b, reg, scale, log_scale, rows, closed, linear, worst, rounded):
    """One pass over the implied plan P, its rows rebuilt from f (one exp per entry, no max or
    sum): P_ij = a_i b_j exp((f_i + g_j - C_ij) / reg) (argmin assignment when reg = 0). For the
    rounding of Altschuler, Weed & Rigollet 2017: rows_i = sum_j P_ij scale_j and closed_i =
    sum_j Q_ij (C_ij + reg log(Q_ij / (a_i b_j))) for Q = P diag(scale), which needs no log per
    entry: C_ij + reg log(Q_ij / (a_i b_j)) = f_i + g_j + reg log scale_j. Also linear_i =
    sum_j P_ij C_ij, rounded_i = sum_j Q_ij C_ij and worst_i = max_j f_i + g_j - C_ij."""
    n, m = C.shape
    for i in prange(n):
        ai, fi = a[i], f[i]
        r, cl, lin, rl, top = 0.0, 0.0, 0.0, 0.0, -np.inf
        if reg == 0.0:
            buf = np.empty(m)
            row_softmax(C, i, g, log_b, reg, buf, buf[:0])
            for j in range(m):
                c = C[i, j]
                r += buf[j] * scale[j]
                cl += buf[j] * scale[j] * c
                lin += buf[j] * c
                top = max(top, fi + g[j] - c)
            rl = cl
        else:
            inv = 1.0 / reg
            for j in range(m):
                c = C[i, j]
                p = _exp(log_b[j] + (fi + g[j] - c) * inv)
                ps = p * scale[j]
                r += ps
                cl += ps * (fi + g[j] + reg * log_scale[j])
                lin += p * c
                rl += ps * c
            for j in range(m):  # apart: a max keeps the loop above from vectorising
                top = max(top, fi + g[j] - C[i, j])
        rows[i] = ai * r
        closed[i] = ai * cl
        linear[i] = ai * lin
        rounded[i] = ai * rl
        worst[i] = top


@njit(cache=True, parallel=True, fastmath=FAST, error_model="numpy")
def rounding_fix(C, a, b, f, g, log_b, reg, scale, log_scale, err_a, err_b, cols, out, out_linear):
    """out_i = the objective of the rounded plan Q_ij = P_ij scale_j + err_a_i err_b_j (err_a
    already divided by its total) minus closed_i of rounding_rows, over the columns ``cols``
    where err_b > 0 (elsewhere the two agree); out_linear_i the same for <C, Q> and rounded_i."""
    n = C.shape[0]
    inv = 1.0 / reg if reg > 0.0 else 0.0
    for i in prange(n):
        ei, ai, fi = err_a[i], a[i], f[i]
        acc, lin = 0.0, 0.0
        if ei > 0.0:
            for k in range(cols.shape[0]):
                lin += ei * err_b[cols[k]] * C[i, cols[k]]
        if ei > 0.0 and reg == 0.0:
            acc = lin  # the objective is linear
        elif ei > 0.0:
            log_a = math.log(ai)
            for k in range(cols.shape[0]):
                j = cols[k]
                c = C[i, j]
                ps = ai * _exp(log_b[j] + (fi + g[j] - c) * inv) * scale[j]
                q = ps + ei * err_b[j]  # > 0
                acc += (q * (c + reg * (_log(q) - log_a - log_b[j]))
                        - ps * (fi + g[j] + reg * log_scale[j]))
        out[i] = acc
        out_linear[i] = lin


@njit(cache=True, parallel=True, fastmath=FAST, error_model="numpy")
def sag_steps(C, w, g, log_b, b, reg, lr, idx, memory, d, seen, buf):
    """SAG with mini-batches: for each row k of idx, refresh the stored gradients
    memory[i] = b - softmax_i(g) of the sampled rows i, keep d = sum_i w_i memory[i] and step
    g += lr * d / seen[n], seen[n] the weight of the rows seen so far (seen[i] = 1 once row i
    is): the average of the gradients stored, not of zeros (Le Roux, Schmidt & Bach 2012, 4.3),
    so that the first pass moves at full speed. Rows of a batch are independent (prange);
    repeated rows are applied in order."""
    steps, batch = idx.shape
    m = g.shape[0]
    n = w.shape[0]
    for k in range(steps):
        for s in prange(batch):
            row_softmax(C, idx[k, s], g, log_b, reg, buf[s], buf[s, :0])
        for s in range(batch):  # serial: O(batch m), one parallel region per step is enough
            i = idx[k, s]
            wi = w[i]
            if seen[i] == 0.0:
                seen[i] = 1.0
                seen[n] += wi
            mem = memory[i]
            row = buf[s]
            for j in range(m):
                new = b[j] - row[j]
                d[j] += wi * (new - mem[j])
                mem[j] = new
        step = lr / seen[n]
        for j in range(m):
            g[j] += step * d[j]


@njit(cache=True, fastmath=FAST, error_model="numpy")
def _asgd_update(g, g_avg, b, buf, step, k):
    """g += step * (b - mean of the rows of buf); g_avg <- running mean of k iterates (serial)."""
    batch, m = buf.shape
    mean = np.zeros(m)
    for s in range(batch):
        for j in range(m):
            mean[j] += buf[s, j]
    for j in range(m):
        g[j] += step * (b[j] - mean[j] / batch)
        g_avg[j] += (g[j] - g_avg[j]) / k


@njit(cache=True, parallel=True, fastmath=FAST, error_model="numpy")
def asgd_steps(src, g, g_avg, log_b, b, reg, lr, k0, idx, buf):
    """Averaged SGD: g += lr / sqrt(k) * (b - mean of the softmax rows idx[k] of a cost source),
    and the running average g_avg of the iterates (k counts steps from k0 + 1). Semi-discrete:
    the source holds the drawn samples, idx numbers them."""
    steps, batch = idx.shape
    cbuf = np.empty(buf.shape)
    for k in range(steps):
        for s in prange(batch):
            row_softmax(src, idx[k, s], g, log_b, reg, buf[s], cbuf[s])
        kk = k0 + k + 1
        step = lr / math.sqrt(kk)
        _asgd_update(g, g_avg, b, buf, step, kk)

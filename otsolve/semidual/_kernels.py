"""Numba kernels of the semi-dual stochastic solvers (Genevay, Cuturi, Peyre & Bach 2016).

Every kernel works on a target potential ``g`` (m,) and the log-weights ``log_b`` (``-inf`` for a
zero-weight target, which then receives no mass). ``reg == 0`` selects the hard c-transform
(argmin) in place of the soft-min, so one code path serves every epsilon.
"""
import math

import numpy as np
from numba import njit, prange

from .._costs import pair_cost


@njit(cache=True, inline="always")
def _fill_softmax(out):
    """out <- softmax(out); returns the log-sum-exp of the input (shifted by its max)."""
    m = out.shape[0]
    top = -np.inf
    for j in range(m):
        top = max(top, out[j])
    s = 0.0
    for j in range(m):
        e = math.exp(out[j] - top)
        out[j] = e
        s += e
    inv = 1.0 / s
    for j in range(m):
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
def row_softmax(C, i, g, log_b, reg, out):
    """out <- softmax_j(log b_j + (g_j - C_ij) / reg) (argmin indicator of C_ij - g_j when reg = 0);
    returns the c-transform -reg * log sum_j b_j exp((g_j - C_ij) / reg) (min_j C_ij - g_j)."""
    m = C.shape[1]
    if reg == 0.0:
        for j in range(m):
            out[j] = C[i, j] - g[j] if log_b[j] > -np.inf else np.inf
        return _fill_argmin(out)
    for j in range(m):
        out[j] = log_b[j] + (g[j] - C[i, j]) / reg
    return -reg * _fill_softmax(out)


@njit(cache=True, inline="always")
def point_softmax(x, i, y, code, p, g, log_b, reg, out):
    """row_softmax for the row of cost pair_cost(x, i, y, j) computed on the fly."""
    m = y.shape[0]
    if reg == 0.0:
        for j in range(m):
            out[j] = pair_cost(x, i, y, j, code, p) - g[j] if log_b[j] > -np.inf else np.inf
        return _fill_argmin(out)
    for j in range(m):
        out[j] = log_b[j] + (g[j] - pair_cost(x, i, y, j, code, p)) / reg
    return -reg * _fill_softmax(out)


@njit(cache=True, parallel=True)
def evaluate(C, a, g, log_b, reg, f, colsum):
    """f_i <- c-transform of g at row i; colsum (t, m) <- per-chunk sums of a_i softmax_i, so that
    colsum.sum(0) is the second marginal of the implied plan P_ij = a_i softmax_ij."""
    n, m = C.shape
    chunks = colsum.shape[0]
    for t in prange(chunks):
        buf = np.empty(m)
        acc = colsum[t]
        acc[:] = 0.0
        for i in range(t * n // chunks, (t + 1) * n // chunks):
            f[i] = row_softmax(C, i, g, log_b, reg, buf)
            w = a[i]
            if w > 0.0:
                for j in range(m):
                    acc[j] += w * buf[j]


@njit(cache=True, parallel=True)
def implied_plan(C, a, g, log_b, reg, P):
    """P_ij = a_i softmax_j(log b_j + (g_j - C_ij) / reg) (argmin assignment when reg = 0)."""
    n = C.shape[0]
    for i in prange(n):
        row_softmax(C, i, g, log_b, reg, P[i])
        for j in range(C.shape[1]):
            P[i, j] *= a[i]


@njit(cache=True, parallel=True)
def scaled_rows(C, a, f, g, log_b, reg, scale, rows, linear, worst):
    """For the implied plan P: rows_i = sum_j P_ij scale_j, linear_i = sum_j P_ij C_ij (first
    pass of the rounding of Altschuler, Weed & Rigollet 2017); worst_i = max_j f_i + g_j - C_ij."""
    n, m = C.shape
    for i in prange(n):
        buf = np.empty(m)
        row_softmax(C, i, g, log_b, reg, buf)
        r, lin, top = 0.0, 0.0, -np.inf
        for j in range(m):
            r += buf[j] * scale[j]
            lin += buf[j] * C[i, j]
            top = max(top, f[i] + g[j] - C[i, j])
        rows[i] = a[i] * r
        linear[i] = a[i] * lin
        worst[i] = top


@njit(cache=True, parallel=True)
def rounded_objective(C, a, b, g, log_b, reg, scale, err_a, err_b, out):
    """out_i = sum_j Q_ij C_ij + reg Q_ij log(Q_ij / (a_i b_j)) for the feasible rounded plan
    Q_ij = P_ij scale_j + err_a_i err_b_j (err_a already divided by its total)."""
    n, m = C.shape
    for i in prange(n):
        buf = np.empty(m)
        row_softmax(C, i, g, log_b, reg, buf)
        acc = 0.0
        for j in range(m):
            q = a[i] * buf[j] * scale[j] + err_a[i] * err_b[j]
            if q > 0.0:
                acc += q * C[i, j]
                if reg > 0.0:
                    acc += reg * q * math.log(q / (a[i] * b[j]))
        out[i] = acc


@njit(cache=True, parallel=True)
def sag_steps(C, w, g, log_b, b, reg, lr, idx, memory, d, buf):
    """SAG with mini-batches: for each row k of idx, refresh the stored gradients
    memory[i] = b - softmax_i(g) of the sampled rows i, keep d = sum_i w_i memory[i] and step
    g += lr * d. Rows of a batch are independent (prange); repeated rows are applied in order."""
    steps, batch = idx.shape
    m = g.shape[0]
    for k in range(steps):
        for s in prange(batch):
            row_softmax(C, idx[k, s], g, log_b, reg, buf[s])
        for s in range(batch):  # serial: O(batch m), one parallel region per step is enough
            i = idx[k, s]
            wi = w[i]
            mem = memory[i]
            row = buf[s]
            for j in range(m):
                new = b[j] - row[j]
                d[j] += wi * (new - mem[j])
                mem[j] = new
        for j in range(m):
            g[j] += lr * d[j]


@njit(cache=True)
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


@njit(cache=True, parallel=True)
def asgd_steps(C, g, g_avg, log_b, b, reg, lr, k0, idx, buf):
    """Averaged SGD: g += lr / sqrt(k) * (b - mean of the batch's softmax rows), and the running
    average g_avg of the iterates (k counts steps from k0 + 1)."""
    steps, batch = idx.shape
    for k in range(steps):
        for s in prange(batch):
            row_softmax(C, idx[k, s], g, log_b, reg, buf[s])
        kk = k0 + k + 1
        step = lr / math.sqrt(kk)
        _asgd_update(g, g_avg, b, buf, step, kk)


@njit(cache=True, parallel=True)
def evaluate_points(x, y, code, p, a, g, log_b, reg, f, linear, colsum):
    """evaluate for costs pair_cost(x_i, y_j) computed on the fly; also linear_i = sum_j P_ij c_ij."""
    n, m = x.shape[0], y.shape[0]
    chunks = colsum.shape[0]
    for t in prange(chunks):
        buf = np.empty(m)
        acc = colsum[t]
        acc[:] = 0.0
        for i in range(t * n // chunks, (t + 1) * n // chunks):
            f[i] = point_softmax(x, i, y, code, p, g, log_b, reg, buf)
            w = a[i]
            lin = 0.0
            for j in range(m):
                acc[j] += w * buf[j]
                if buf[j] > 0.0:
                    lin += buf[j] * pair_cost(x, i, y, j, code, p)
            linear[i] = w * lin


@njit(cache=True, parallel=True)
def asgd_points(x, y, code, p, g, g_avg, log_b, b, reg, lr, k0, buf):
    """One semi-discrete ASGD step per batch of samples x (steps, batch, d): as asgd_steps with
    the costs computed from the samples."""
    steps, batch = x.shape[0], x.shape[1]
    for k in range(steps):
        xk = x[k]
        for s in prange(batch):
            point_softmax(xk, s, y, code, p, g, log_b, reg, buf[s])
        kk = k0 + k + 1
        step = lr / math.sqrt(kk)
        _asgd_update(g, g_avg, b, buf, step, kk)

"""Numba kernels of 1-D and sliced optimal transport: merges of sorted samples.

A sample is held sorted (``u``) with its cumulative weights normalised to end at exactly 1
(``cu``); a batch keeps one sample a row, or one cumulative row shared by every row.
"""
from numba import njit, prange


@njit(cache=True, inline="always")
def _advance(cu, cv, i, j, level):
    """The next cell of the merge: past every sample whose cumulative weight is reached."""
    return i + (cu[i] <= level), j + (cv[j] <= level)


@njit(cache=True, inline="always")
def merge_cost(u, cu, v, cv, p):
    """sum_k (t_k - t_{k-1}) |F^-1(t_k) - G^-1(t_k)|^p over the merged levels t_k of cu and cv."""
    n, m = u.shape[0], v.shape[0]
    i, j = 0, 0
    prev, total = 0.0, 0.0
    while i < n and j < m:
        level = min(cu[i], cv[j])
        d = abs(u[i] - v[j])
        total += (level - prev) * (d if p == 1.0 else d * d if p == 2.0 else d ** p)
        prev = level
        i, j = _advance(cu, cv, i, j, level)
    return total


@njit(cache=True, parallel=True)
def batch_costs(U, CU, V, CV, p, out):
    """out[r] = W_p^p(U[r], V[r]); CU, CV have one row per problem or one shared row."""
    step_u, step_v = min(CU.shape[0] - 1, 1), min(CV.shape[0] - 1, 1)  # 0: a shared row
    for r in prange(U.shape[0]):
        out[r] = merge_cost(U[r], CU[r * step_u], V[r], CV[r * step_v], p)


def _sliced_pairs(S, CS, offsets, I, J, p, out):
    """out[q] = mean over rows l of W_p^p between segments I[q] and J[q] of S[l] (sorted
    projections of all clouds, cloud k at offsets[k]:offsets[k + 1])."""
    L = S.shape[0]
    for q in prange(I.shape[0]):
        lo_i, hi_i, lo_j, hi_j = offsets[I[q]], offsets[I[q] + 1], offsets[J[q]], offsets[J[q] + 1]
        total = 0.0
        for row in range(L):  # a fixed order: the same sum for any chunking of the pairs
            total += merge_cost(S[row, lo_i:hi_i], CS[row, lo_i:hi_i], S[row, lo_j:hi_j], CS[row, lo_j:hi_j], p)
        out[q] = total / L


sliced_pairs = njit(cache=True, parallel=True)(_sliced_pairs)
sliced_pairs_serial = njit(cache=True)(_sliced_pairs)  # inside Dask tasks: the workers are the parallelism


@njit(cache=True)
def merge_gradient(iu, cu, pu, iv, cv, pv, x, y, p, grad):
    """W_p^p of the projections pu, pv (orders iu, iv sort them) and its gradient in the
    direction, sum over the 1-D optimal coupling of t p |s|^(p-1) sign(s) (x_i - y_j),
    s = pu_i - pv_j (the coupling is fixed: an envelope / subgradient argument)."""
    n, m, d = iu.shape[0], iv.shape[0], x.shape[1]
    grad[:] = 0.0
    i, j = 0, 0
    prev, total = 0.0, 0.0
    while i < n and j < m:
        level = min(cu[i], cv[j])
        s = pu[iu[i]] - pv[iv[j]]
        t = level - prev
        total += t * abs(s) ** p
        if s != 0.0:
            w = t * p * abs(s) ** (p - 1.0) * (1.0 if s > 0 else -1.0)
            for k in range(d):
                grad[k] += w * (x[iu[i], k] - y[iv[j], k])
        prev = level
        i, j = _advance(cu, cv, i, j, level)
    return total

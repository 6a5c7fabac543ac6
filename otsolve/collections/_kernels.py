"""Numba kernels over many pairs of packed point clouds (cloud k in rows offsets[k]:offsets[k + 1])."""
import numpy as np
from numba import njit, prange

from .._costs import point_costs
from ..lp._assignment_kernels import MAX_SIZE as ASSIGNMENT_MAX_SIZE, duals_in_range, solve_assignment
from ..lp._kernels import solve

OPTIMAL, NUMERICAL_ERROR = 0, 4


@njit(cache=True, inline="always")
def _reduced_costs(x, y, code, p):
    """C - u_i - v_j with u the row minima, then v the column minima of what is left, as
    otsolve.exact reduces C before its simplex (tolerances follow the spread, not an offset)."""
    n, m = x.shape[0], y.shape[0]
    C = np.empty((n, m))
    u, v = np.empty(n), np.full(m, np.inf)
    yT = np.ascontiguousarray(y.T)
    for r in range(n):  # rows by point_costs, which vectorise (pair_cost by pair: 15x slower)
        point_costs(x, r, yT, 0, m, code, p, C[r])
        low = np.inf
        for c in range(m):
            low = min(low, C[r, c])
        u[r] = low
        for c in range(m):
            C[r, c] -= low
            v[c] = min(v[c], C[r, c])
    for r in range(n):
        for c in range(m):
            C[r, c] -= v[c]
    return C, u, v


@njit(cache=True, inline="always")
def _certified(C, a, b, f, g, value, certificate_rtol):
    """otsolve.exact's certificate: max_ij f_i + g_j - C_ij and the duality gap within
    certificate_rtol of max|f| + max|g| (after the a.f == b.g normalisation)."""
    shift = (b @ g - a @ f) / (a.sum() + b.sum())
    bound = certificate_rtol * (np.abs(f + shift).max() + np.abs(g - shift).max())
    violations = 0  # a count, not the largest violation: a sum of comparisons vectorises, a float max does not
    for r in range(C.shape[0]):
        for c in range(C.shape[1]):
            violations += f[r] + g[c] - C[r, c] > bound
    return violations == 0 and abs(value - a @ f - b @ g) / a.sum() <= bound


@njit(cache=True, inline="always")
def _uniform(w):
    return (w == w[0]).all()


@njit(cache=True, inline="always")
def _exact_pair(points, weights, lo_i, hi_i, lo_j, hi_j, code, p, tol, certificate_rtol, max_iter):
    """(<C, P*>, status, pivots or augmenting paths) of one pair as otsolve.exact solves it: the
    same reduced dense costs, marginals (unit mass, b rescaled to the mass of a), assignment path
    (uniform weights, n = m, no max_iter; trusted as otsolve.exact trusts it), else pricing block
    and certificate (an optimal basis that fails it is NUMERICAL_ERROR), from the north-west
    corner in the order of the points."""
    n, m = hi_i - lo_i, hi_j - lo_j
    C, u, v = _reduced_costs(points[lo_i:hi_i], points[lo_j:hi_j], code, p)
    a = weights[lo_i:hi_i] / weights[lo_i:hi_i].sum()  # unit mass, as otsolve.pairwise documents
    b = weights[lo_j:hi_j] / weights[lo_j:hi_j].sum()
    b *= a.sum() / b.sum()  # as otsolve's check_balanced: equal masses to the last bit
    if n == m <= ASSIGNMENT_MAX_SIZE and max_iter < 0 and _uniform(a) and _uniform(b):  # as is_assignment
        col, f, g = np.empty(n, np.int64), np.empty(n), np.empty(n)
        searches = solve_assignment(C, col, f, g)
        value = 0.0
        for r in range(n):
            value += a[0] * C[r, col[r]]
        if duals_in_range(C, col, f, g) and _certified(C, a, b, f, g, value, certificate_rtol):
            return value + a @ u + b @ v, OPTIMAL, searches
    block_rows = max(1, int(np.round(np.sqrt(n * m) / m)))  # as otsolve.lp: about sqrt(n m) arcs
    parent, flow, pi = np.empty(n + m, np.int64), np.empty(n + m), np.empty(n + m)
    status, pivots = solve(C, a, b, np.arange(n), np.arange(m), np.empty(0), block_rows, tol, max_iter,
                           parent, flow, pi)
    value = 0.0
    for w in range(n + m):
        up = parent[w]
        if up >= 0 and flow[w] > 0.0:
            value += flow[w] * (C[w, up - n] if w < n else C[up, w - n])
    if status == OPTIMAL and not _certified(C, a, b, pi[:n], pi[n:], value, certificate_rtol):
        status = NUMERICAL_ERROR
    return value + a @ u + b @ v, status, pivots


def _exact_pairs(points, weights, offsets, I, J, code, p, tol, certificate_rtol, max_iter, values, status,
                 pivots):
    """values[q] = exact OT cost between clouds I[q] and J[q], one pair per thread at a time."""
    for q in prange(I.shape[0]):
        values[q], status[q], pivots[q] = _exact_pair(points, weights, offsets[I[q]], offsets[I[q] + 1],
                                                      offsets[J[q]], offsets[J[q] + 1], code, p, tol,
                                                      certificate_rtol, max_iter)


exact_pairs = njit(cache=True, parallel=True)(_exact_pairs)
exact_pairs_serial = njit(cache=True)(_exact_pairs)  # inside Dask tasks: the workers are the parallelism

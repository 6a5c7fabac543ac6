"""Numba kernel of the linear assignment problem (square C, min sum_i C[i, col_of_row[i]]).

An auction with epsilon scaling (Bertsekas 1988) first brings the column prices v near optimal
(bids lower the price of the column a row takes), then every row not on a column of least
reduced cost C_ij - v_j is released and rejoined by a shortest augmenting path (Jonker &
Volgenant 1987: Dijkstra over reduced costs, prices of the settled columns updated), which keeps
every assigned row on such a column. The end is exact whatever the auction reached: u_i =
min_j C_ij - v_j and v are then dual feasible and tight on the assignment (to the rounding of
one subtraction, which the caller's certificate measures). The auction alone would only be
epsilon-optimal; the augmentations alone (SciPy's linear_sum_assignment) search far longer from
poor prices on geometric costs.
"""
import numpy as np
from numba import njit, prange

MAX_SIZE = 1000      # larger problems go to the simplex: the dense auction grows about as n^3
                     # (measured on 2-D clouds: 2.7x faster than the simplex at n = 300, 1.1x at
                     # 1000, 1.1x slower at 2000, 1.7x at 4000)
EPS_START = 0.05     # first bid increment, relative to the largest (reduced) cost
EPS_END = 1e-6       # last one: the rows released after it rejoin by short paths
EPS_FACTOR = 5.0     # epsilon scaling: each phase divides it by this
DUAL_RANGE_MAX = 1e4  # duals spanning more than this times the scale of the cheap costs (see
                     # duals_in_range) are not trusted: the auction's prices may have jumped over
                     # huge costs (1e32 next to 1) and lost the digits of the small ones, which a
                     # certificate relative to the duals cannot see; the caller then uses the simplex
BIDS_PER_ROW = 64    # a phase making more bids than this times n is given up: its rows then
                     # rejoin by augmenting paths (exact in any case; a bound on the work)


@njit(cache=True, inline="always")
def _two_smallest(C, i, v):
    """(smallest, its column, second smallest) of C[i, j] - v[j] over j. Selects, not branches
    (on clouds sorted along an axis a row's costs fall steadily to its best column and branches
    on each new minimum were mispredicted), in four interleaved runs merged at the end, so that
    the selects do not wait on one another."""
    n = C.shape[0]
    inf = np.inf
    low0 = low1 = low2 = low3 = inf
    sub0 = sub1 = sub2 = sub3 = inf
    arg0 = arg1 = arg2 = arg3 = 0
    row = C[i]
    for j in range(0, n - 3, 4):
        h0, h1, h2, h3 = row[j] - v[j], row[j + 1] - v[j + 1], row[j + 2] - v[j + 2], row[j + 3] - v[j + 3]
        sub0, sub1 = min(sub0, max(h0, low0)), min(sub1, max(h1, low1))
        sub2, sub3 = min(sub2, max(h2, low2)), min(sub3, max(h3, low3))
        arg0, arg1 = (j if h0 < low0 else arg0), (j + 1 if h1 < low1 else arg1)
        arg2, arg3 = (j + 2 if h2 < low2 else arg2), (j + 3 if h3 < low3 else arg3)
        low0, low1, low2, low3 = min(low0, h0), min(low1, h1), min(low2, h2), min(low3, h3)
    for j in range(n - n % 4, n):
        h = row[j] - v[j]
        sub0 = min(sub0, max(h, low0))
        arg0 = j if h < low0 else arg0
        low0 = min(low0, h)
    low, arg, sub = low0, arg0, sub0
    for other_low, other_arg, other_sub in ((low1, arg1, sub1), (low2, arg2, sub2), (low3, arg3, sub3)):
        sub = min(min(sub, other_sub), max(low, other_low))
        arg = other_arg if other_low < low or (other_low == low and other_arg < arg) else arg
        low = min(low, other_low)
    return low, arg, sub


@njit(cache=True)
def _augment(C, start, col_of_row, row_of_col, v, dist, pred, cols):
    """Dijkstra from free row ``start`` over reduced costs C_ij - v_j - u_i to the nearest free
    column, then prices of the settled columns and the assignments along the path."""
    n = C.shape[0]
    for j in range(n):
        dist[j] = C[start, j] - v[j]
        pred[j] = start
        cols[j] = j
    low, up = 0, 0  # cols[:low] settled, cols[low:up] at the current minimum distance, rest unseen
    end = -1
    last = 0
    d_min = 0.0
    while end < 0:
        if up == low:  # collect every column at the next smallest distance
            last = low
            d_min = dist[cols[up]]
            up += 1
            for k in range(up, n):
                j = cols[k]
                h = dist[j]
                if h <= d_min:
                    if h < d_min:
                        up = low
                        d_min = h
                    cols[k] = cols[up]
                    cols[up] = j
                    up += 1
            for k in range(low, up):
                if row_of_col[cols[k]] < 0:
                    end = cols[k]
                    break
        if end >= 0:
            break
        j1 = cols[low]
        low += 1
        i = row_of_col[j1]
        h = C[i, j1] - v[j1] - d_min
        for k in range(up, n):
            j = cols[k]
            d = C[i, j] - v[j] - h
            if d < dist[j]:
                pred[j] = i
                dist[j] = d
                if d == d_min:
                    if row_of_col[j] < 0:
                        end = j
                        break
                    cols[k] = cols[up]
                    cols[up] = j
                    up += 1
    for k in range(last):  # columns settled before the last distance level
        j = cols[k]
        v[j] += dist[j] - d_min
    while True:
        i = pred[end]
        row_of_col[end] = i
        end, col_of_row[i] = col_of_row[i], end
        if i == start:
            break


@njit(cache=True)
def _auction(C, eps_start, eps_end, col_of_row, row_of_col, v, stack):
    """Phases of Gauss-Seidel bids from all rows free, epsilon divided by EPS_FACTOR from
    eps_start to eps_end; v_j only falls. Stops early (rows left free) past the bid bound."""
    n = C.shape[0]
    eps = eps_start
    while True:
        col_of_row[:] = -1
        row_of_col[:] = -1
        for i in range(n):
            stack[i] = n - 1 - i  # row 0 bids first
        top = n
        bids_left = BIDS_PER_ROW * n
        while top > 0 and bids_left > 0:
            bids_left -= 1
            top -= 1
            i = stack[top]
            low, j1, sub = _two_smallest(C, i, v)
            v[j1] -= (sub - low) + eps  # row i now prefers j1 by eps over any other column
            i0 = row_of_col[j1]
            col_of_row[i], row_of_col[j1] = j1, i
            if i0 >= 0:
                col_of_row[i0] = -1
                stack[top] = i0
                top += 1
        if top > 0 or eps <= eps_end:
            return
        eps = max(eps / EPS_FACTOR, eps_end)


@njit(cache=True)
def solve_assignment(C, col_of_row, u, v):
    """Optimal assignment col_of_row of the square finite matrix C >= 0 (reduced: a zero in
    every row and column) and duals u, v with u_i + v_j <= C_ij, tight on it. Returns the
    number of augmenting paths."""
    n = C.shape[0]
    row_of_col = np.full(n, -1, np.int64)
    col_of_row[:] = -1
    v[:] = 0.0  # feasible for reduced costs: u = 0
    free = np.empty(n, np.int64)
    spread = 0.0
    for i in range(n):
        for j in range(n):
            spread = max(spread, C[i, j])
    if spread > 0.0 and n > 1:
        _auction(C, EPS_START * spread, EPS_END * spread, col_of_row, row_of_col, v, free)
    for i in range(n):  # the last bid left each row eps above its best: raise its column's price
        j = col_of_row[i]
        if j >= 0:
            low = np.inf
            for k in range(n):
                low = min(low, C[i, k] - v[k])
            v[j] = C[i, j] - low
    n_free = 0
    for i in range(n):  # keep the rows on a column of least reduced cost, release the others
        j = col_of_row[i]
        if j >= 0:
            low = np.inf
            for k in range(n):
                low = min(low, C[i, k] - v[k])
            if C[i, j] - v[j] <= low:
                continue
            row_of_col[j] = -1
            col_of_row[i] = -1
        free[n_free] = i
        n_free += 1
    dist, pred, cols = np.empty(n), np.empty(n, np.int64), np.empty(n, np.int64)
    for f in range(n_free):
        _augment(C, free[f], col_of_row, row_of_col, v, dist, pred, cols)
    zero_cost = True
    for i in range(n):
        zero_cost = zero_cost and C[i, col_of_row[i]] == 0.0
    if zero_cost:  # optimal for C >= 0, with the exact duals u = v = 0 whatever the prices
        u[:] = 0.0
        v[:] = 0.0
        return n_free
    for i in range(n):  # the tightest row duals for these prices
        low = np.inf
        for j in range(n):
            low = min(low, C[i, j] - v[j])
        u[i] = low
    return n_free


@njit(cache=True)
def duals_in_range(C, col_of_row, u, v):
    """Whether max|u| + max|v| (as computed: the prices whose digits the comparisons used) is
    within DUAL_RANGE_MAX times the scale of the cheap costs, the largest assigned cost or
    second smallest cost of a row."""
    n = C.shape[0]
    scale, zeros = 0.0, np.zeros(n)
    for i in range(n):
        sub = _two_smallest(C, i, zeros)[2] if n > 1 else 0.0
        scale = max(scale, C[i, col_of_row[i]], sub)
    return np.abs(u).max() + np.abs(v).max() <= DUAL_RANGE_MAX * scale


@njit(cache=True, parallel=True)
def solve_assignment_batch(Cs, cols, us, vs, searches):
    """Independent problems Cs[k] in parallel, one per thread at a time."""
    for k in prange(Cs.shape[0]):
        searches[k] = solve_assignment(Cs[k], cols[k], us[k], vs[k])

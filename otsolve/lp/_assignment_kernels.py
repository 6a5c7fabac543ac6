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
                     # (measured on 2-D clouds: 3x faster than the simplex at n = 300, 2x at
                     # 1000; before the vectorised scans 1.1x slower at 2000, 1.7x at 4000)
EPS_START = 0.05     # first bid increment, relative to the largest (reduced) cost
EPS_END = 1e-6       # last one: the rows released after it rejoin by short paths
EPS_FACTOR = 5.0     # epsilon scaling: each phase divides it by this
DUAL_RANGE_MAX = 1e4  # duals spanning more than this times the scale of the cheap costs (see
                     # duals_in_range) are not trusted: the auction's prices may have jumped over
                     # huge costs (1e32 next to 1) and lost the digits of the small ones, which a
                     # certificate relative to the duals cannot see; the caller then uses the simplex
BIDS_PER_ROW = 64    # a phase making more bids than this times n is given up: its rows then
                     # rejoin by augmenting paths (exact in any case; a bound on the work)
INT64_MAX = np.iinfo(np.int64).max
INDEX_BITS = 10      # a column index in the low bits of a scan key: 2^10 >= MAX_SIZE
INDEX_MASK = (1 << INDEX_BITS) - 1
VALUE_MASK = ~np.int64(INDEX_MASK)
assert MAX_SIZE <= 1 << INDEX_BITS
LOW_BITS = INT64_MAX  # a negative float's bits with these flipped order as its value (as int64)


@njit(cache=True, inline="always")
def _two_smallest_nonnegative(C, i, v, h, h_bits):
    """(value, column) of the smallest and (value) of the second smallest C[i, j] - v[j] >= 0
    over j (the auction's prices only fall from 0 on C >= 0), in passes that vectorise: the
    differences into h (+ 0.0 turns a -0 into +0), then int64 minima of keys, their bits
    (h_bits is h viewed as int64: they order non-negative floats as their values do; float
    minima vectorise only under fastmath's nnan) with the column in the last INDEX_BITS. Two
    values within 2^INDEX_BITS units in the last place may be taken in either order (a bid
    then off by ~1e-13 of the costs, far below the auction's epsilon; the augmenting paths
    that end the solve compare exactly); the values returned are those of the columns found."""
    n = C.shape[0]
    row = C[i]
    for j in range(n):
        h[j] = (row[j] - v[j]) + 0.0
    low = INT64_MAX
    for j in range(n):
        key = (h_bits[j] & VALUE_MASK) | j
        h_bits[j] = key
        low = min(low, key)
    arg = low & INDEX_MASK
    h_bits[arg] = INT64_MAX
    sub = INT64_MAX
    for j in range(n):
        sub = min(sub, h_bits[j])
    second = sub & INDEX_MASK
    return (row[arg] - v[arg]) + 0.0, arg, (row[second] - v[second]) + 0.0


@njit(cache=True, inline="always")
def _least(C, i, v, h, h_bits):
    """min_j C[i, j] - v[j], exactly, in vectorised passes as in _two_smallest_nonnegative: a
    negative difference's bits with the low 63 flipped order all floats as int64."""
    n = C.shape[0]
    row = C[i]
    for j in range(n):
        h[j] = row[j] - v[j]
    low = INT64_MAX
    for j in range(n):
        bits = h_bits[j]
        low = min(low, bits ^ ((bits >> 63) & LOW_BITS))
    h_bits[0] = low ^ ((low >> 63) & LOW_BITS)  # read the bits back as a float
    return h[0]


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
def _auction(C, eps_start, eps_end, col_of_row, row_of_col, v, stack, h, h_bits):
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
            low, j1, sub = _two_smallest_nonnegative(C, i, v, h, h_bits)
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
    h = np.empty(n)  # scratch of the vectorised row scans
    h_bits = h.view(np.int64)
    spread = 0.0
    for i in range(n):
        for j in range(n):
            spread = max(spread, C[i, j])
    if spread > 0.0 and n > 1:
        _auction(C, EPS_START * spread, EPS_END * spread, col_of_row, row_of_col, v, free, h, h_bits)
    for i in range(n):  # the last bid left each row eps above its best: raise its column's price
        j = col_of_row[i]
        if j >= 0:
            v[j] = C[i, j] - _least(C, i, v, h, h_bits)
    n_free = 0
    for i in range(n):  # keep the rows on a column of least reduced cost, release the others
        j = col_of_row[i]
        if j >= 0:
            if C[i, j] - v[j] <= _least(C, i, v, h, h_bits):
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
        u[i] = _least(C, i, v, h, h_bits)
    return n_free


@njit(cache=True)
def duals_in_range(C, col_of_row, u, v):
    """Whether max|u| + max|v| (as computed: the prices whose digits the comparisons used) is
    within DUAL_RANGE_MAX times the scale of the cheap costs, the largest assigned cost or
    second smallest cost of a row."""
    n = C.shape[0]
    scale, zeros, h = 0.0, np.zeros(n), np.empty(n)
    for i in range(n):
        sub = _two_smallest_nonnegative(C, i, zeros, h, h.view(np.int64))[2] if n > 1 else 0.0
        scale = max(scale, C[i, col_of_row[i]], sub)
    return np.abs(u).max() + np.abs(v).max() <= DUAL_RANGE_MAX * scale


@njit(cache=True, parallel=True)
def solve_assignment_batch(Cs, cols, us, vs, searches):
    """Independent problems Cs[k] in parallel, one per thread at a time."""
    for k in prange(Cs.shape[0]):
        searches[k] = solve_assignment(Cs[k], cols[k], us[k], vs[k])

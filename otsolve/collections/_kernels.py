"""Numba kernels over many pairs of packed point clouds (cloud k in rows offsets[k]:offsets[k + 1])."""
import numpy as np
from numba import njit, prange

from .._costs import point_costs
from ..lp._assignment_kernels import MAX_SIZE as ASSIGNMENT_MAX_SIZE, duals_in_range, solve_assignment
from ..entropic import _kernels as entropic_kernels
from ..entropic._problem import KERNEL_SUM_MIN, MAX_SQUARINGS, SCALING_MAX
from ..entropic.sinkhorn import RELAX_BACKOFF, RELAX_GUARD, RELAX_MAX, RELAX_SPAN, RELAX_STEP
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


NO_COSTS = np.empty((0, 0))  # scaled_lse without its log-domain repair of low lines (done below)
FINAL_MAX_ITER = 100  # iterations at the target reg after which a pair leaves the kernel for
                      # otsolve.wasserstein, whose Newton phase (from 30 there) converges where
                      # plain or over-relaxed updates crawl (300 points, reg 0.05 of the mean cost:
                      # not in 10,000 over-relaxed iterations; Newton: 261 in all)


@njit(cache=True, inline="always")
def _same_cloud(points, weights, lo_i, hi_i, lo_j, hi_j):
    """Cloud i is cloud j (points and weights): otsolve.sinkhorn_points then runs its symmetric
    iteration, so such a pair is left to it."""
    if hi_i - lo_i != hi_j - lo_j:
        return False
    for r in range(hi_i - lo_i):
        if weights[lo_i + r] != weights[lo_j + r]:
            return False
        for c in range(points.shape[1]):
            if points[lo_i + r, c] != points[lo_j + r, c]:
                return False
    return True


@njit(cache=True, inline="always")
def _finite_or_zero(z, out):
    for k in range(z.shape[0]):
        out[k] = z[k] if np.isfinite(z[k]) else 0.0


@njit(cache=True, inline="always")
def _softmin(C, K, side, h, inv_reg, lse, kept, hF, hG):
    """lse <- log sum exp(h - C / eps) over the rows (side 0) or columns of C, by a mat-vec with
    the kept Gibbs kernel K when it is at this eps and exact to rounding, else by a log-domain
    pass that rebuilds K; when eps halves K is squared instead (kept = (1 / eps of K or 0,
    squarings in a row)), as otsolve.entropic's MatrixCost does, without its per-line repairs."""
    if inv_reg == 2.0 * kept[0] and kept[1] < MAX_SQUARINGS:
        _square(K, side, h, lse, kept, hF, hG)
    if kept[0] == inv_reg:
        absorbed, other = (hG, hF) if side == 0 else (hF, hG)
        if entropic_kernels.scaled_lse(K, side, h, absorbed, other, KERNEL_SUM_MIN, lse, NO_COSTS, 0.0,
                                       0.0) == 1:
            return
    if side == 0:
        entropic_kernels.softmin_rows_serial(C, C.shape[0], h, inv_reg, lse, K)
        _finite_or_zero(-lse, hF)
        _finite_or_zero(h, hG)
    else:
        entropic_kernels.softmin_cols_serial(C, h, inv_reg, lse, K)
        _finite_or_zero(h, hF)
        _finite_or_zero(-lse, hG)
    kept[0], kept[1] = inv_reg, 0.0


@njit(cache=True, inline="always")
def _square(K, side, h, lse, kept, hF, hG):
    """MatrixCost._square: K <- (u_i K_ij v_j)^2 at twice 1 / eps, u, v moving K to the
    potentials of this call (h, and the guess -lse on the other side); given up (kept[0] = 0,
    a log-domain pass follows) when they are extreme."""
    new_F, new_G = np.empty(hF.shape[0]), np.empty(hG.shape[0])
    _finite_or_zero(-lse if side == 0 else h, new_F)
    _finite_or_zero(h if side == 0 else -lse, new_G)
    log_u, log_v = 0.5 * new_F - hF, 0.5 * new_G - hG
    if max(np.abs(log_u).max(), np.abs(log_v).max()) > SCALING_MAX:
        kept[0] = 0.0
        return
    entropic_kernels.square_scaled_serial(K, np.exp(log_u), np.exp(log_v))
    hF[:], hG[:] = new_F, new_G
    kept[0], kept[1] = 2.0 * kept[0], kept[1] + 1.0


@njit(cache=True, inline="always")
def _relax_update(relax, history, saved_f, saved_g, err, f, g, mass):
    """otsolve.entropic.sinkhorn._Relaxation.update on arrays: relax = (omega, cap on omega,
    iterations since the window started, errors recorded, error at the last raise), history the
    last RELAX_SPAN + 1 errors (a ring); True when (saved_f, saved_g) must be restored."""
    omega, cap = relax[0], relax[1]
    count = int(relax[3])
    history[count % (RELAX_SPAN + 1)] = err
    relax[2] += 1.0
    relax[3] += 1.0
    if omega > 1.0 and not err <= max(2.0 * relax[4], min(RELAX_GUARD * relax[4], 0.9 * mass)):
        relax[0], relax[1], relax[2] = 1.0, 1.0 + RELAX_BACKOFF * (omega - 1.0), 0.0
        history[(count + 1) % (RELAX_SPAN + 1)] = relax[4]  # the window restarts from the saved error
        relax[3] += 1.0
        return True
    if cap <= 1.0 or relax[2] <= RELAX_SPAN:
        return False
    before = history[(count + 1) % (RELAX_SPAN + 1)]  # RELAX_SPAN errors ago
    if not before > 0.0:
        return False
    mu = (err / before) ** (1.0 / RELAX_SPAN)
    if omega - 1.0 < mu < 1.0:
        theta = min((mu + omega - 1.0) ** 2 / (mu * omega * omega), 1.0)
        w_new = min(2.0 / (1.0 + np.sqrt(1.0 - theta)), cap)
        if w_new > omega * (1.0 + RELAX_STEP):
            relax[0], relax[2], relax[4] = w_new, 0.0, err
            saved_f[:], saved_g[:] = f, g
    return False


@njit(cache=True, inline="always")
def _hopeless(history, appended, err, target, left):
    """The error, shrinking at its rate over the last RELAX_SPAN iterations, would still be above
    target after ``left`` more: the pair leaves the kernel now rather than after them."""
    before = history[appended % (RELAX_SPAN + 1)]
    rate = (err / before) ** (1.0 / RELAX_SPAN) if before > 0.0 else 0.0
    return not err * rate ** left <= target


@njit(cache=True, inline="always")
def _sinkhorn_pair(points, weights, lo_i, hi_i, lo_j, hi_j, code, p, scale, reg, tol, max_iter, eps_scaling,
                   work):
    """(<C, P>, certified, iterations) of one pair as otsolve.sinkhorn_points solves it on its dense
    costs: unit masses (b rescaled to the mass of a), costs shifted by their minimum when it is
    further than their spread from 0, reg annealed from ``scale`` (one iteration a level), then
    alternating log-domain updates, over-relaxed as there, until the row error of the plan is
    below tol times the mass. Certified only if that holds for the evaluated plan (rows and
    columns); no Newton phase: a pair not done in FINAL_MAX_ITER iterations at the target reg
    (or max_iter) is left uncertified, for the caller to solve by otsolve.wasserstein."""
    n, m = hi_i - lo_i, hi_j - lo_j
    C, K = work[:n * m].reshape((n, m)), work[n * m:2 * n * m].reshape((n, m))
    x, yT = points[lo_i:hi_i], np.ascontiguousarray(points[lo_j:hi_j].T)
    for r in range(n):
        point_costs(x, r, yT, 0, m, code, p, C[r])
    low, high = C.min(), C.max()
    offset = low if abs(low) > high - low else 0.0  # as MatrixCost(C, shift=True)
    if offset != 0.0:
        C -= offset
    a = weights[lo_i:hi_i] / weights[lo_i:hi_i].sum()
    b = weights[lo_j:hi_j] / weights[lo_j:hi_j].sum()
    b *= a.sum() / b.sum()  # as check_balanced
    log_a, log_b, mass = np.log(a), np.log(b), a.sum()
    levels = int(np.ceil(np.log2(scale / reg))) if eps_scaling and scale > reg else 0
    f, g, T_f, T_g = np.zeros(n), np.zeros(m), np.zeros(n), np.zeros(m)
    hF, hG, kept = np.zeros(n), np.zeros(m), np.zeros(2)
    relax = np.array([1.0, RELAX_MAX, 0.0, 0.0, 0.0])  # omega, cap, since, appended, saved error
    history, saved_f, saved_g = np.empty(RELAX_SPAN + 1), np.empty(n), np.empty(m)
    n_iter, converged, final_iter = 0, False, 0
    for level in range(levels + 1):
        eps = scale * 0.5 ** level if level < levels else reg
        final = level == levels
        while n_iter < max_iter and not converged and final_iter < FINAL_MAX_ITER:
            lse = T_f / -eps
            _softmin(C, K, 0, log_b + g / eps, 1.0 / eps, lse, kept, hF, hG)
            T_f = -eps * lse
            if final:
                err = 0.0
                for r in range(n):
                    err += abs(a[r] * np.expm1(min((f[r] - T_f[r]) / eps, 700.0)))
                if err <= tol * mass and relax[0] == 1.0:  # its columns are exact
                    converged = True
                    break
                if err <= tol * mass:  # plain steps from now on
                    relax[0], relax[1] = 1.0, 1.0
                final_iter += 1
                if _relax_update(relax, history, saved_f, saved_g, err, f, g, mass):
                    f, g = saved_f.copy(), saved_g.copy()
                    continue
                if final_iter >= 2 * RELAX_SPAN and _hopeless(history, int(relax[3]), err, tol * mass,
                                                             FINAL_MAX_ITER - final_iter):
                    break
            w = relax[0]
            f = T_f.copy() if w == 1.0 else (1.0 - w) * f + w * T_f
            lse = T_g / -eps
            _softmin(C, K, 1, log_a + f / eps, 1.0 / eps, lse, kept, hF, hG)
            T_g = -eps * lse
            g = T_g.copy() if w == 1.0 else (1.0 - w) * g + w * T_g
            n_iter += 1
            if not final:
                break
    if not converged:
        return np.nan, False, n_iter
    shift = (b @ g - a @ f) / (mass + b.sum())  # as the evaluation of otsolve.entropic
    stats = np.empty((n, entropic_kernels.N_STATS))
    entropic_kernels.plan_rows_serial(C, n, f + shift, g - shift, log_a, log_b, 1.0 / reg, K, stats,
                                      np.empty(0), np.empty(0))
    cols = np.zeros(m)
    for r in range(n):  # K now holds the plan
        cols += K[r]
    err = max(np.abs(stats[:, 0] - a).sum(), np.abs(cols - b).sum())
    value = stats[:, 1].sum() + offset * mass
    return value, np.isfinite(value) and err <= tol * mass, n_iter


def _sinkhorn_pairs(points, weights, offsets, I, J, scales, code, p, reg, tol, max_iter, eps_scaling, values,
                    certified, n_iter):
    """values[q] = <C, P> of the entropic plan between clouds I[q] and J[q] (see _sinkhorn_pair),
    one pair per thread at a time, each in its own workspace (numba's get_thread_id, for one per
    thread, makes a kernel uncacheable); certified[q] False where the caller must solve the pair
    again (or J[q] is cloud I[q])."""
    for q in prange(I.shape[0]):
        lo_i, hi_i, lo_j, hi_j = offsets[I[q]], offsets[I[q] + 1], offsets[J[q]], offsets[J[q] + 1]
        if _same_cloud(points, weights, lo_i, hi_i, lo_j, hi_j):
            values[q], certified[q], n_iter[q] = np.nan, False, 0
            continue
        work = np.empty(2 * (hi_i - lo_i) * (hi_j - lo_j))
        values[q], certified[q], n_iter[q] = _sinkhorn_pair(points, weights, lo_i, hi_i, lo_j, hi_j, code, p,
                                                            scales[q], reg, tol, max_iter, eps_scaling, work)


sinkhorn_pairs = njit(cache=True, parallel=True)(_sinkhorn_pairs)
sinkhorn_pairs_serial = njit(cache=True)(_sinkhorn_pairs)

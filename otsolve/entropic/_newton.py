"""Sinkhorn-Newton at the final reg (Brauer, Clason, Lorenz, Wirth 2017): truncated Newton steps on
the semi-dual in f, with g = T(f) after every step so that the columns of the plan stay exact.

The semi-dual Phi(f) = a.f + b.T(f) is concave, with gradient a - P 1 and Hessian
-(diag(P 1) - P diag(1/b) P^T) / eps. Plain Sinkhorn converges like 1 - sigma^2 (sigma the second
singular value of the scaled plan, close to 1 at small reg); conjugate gradients on the Newton system
converge like 1 - sqrt(1 - sigma^2), and Newton's outer iteration superlinearly. The Hessian is only
applied, by mat-vecs with the Gibbs kernel kept beside C: P = diag(u) K diag(v).

Safeguards: a step moves f by at most STEP_MAX reg, and must increase Phi (Armijo, backtracking
down to BACKTRACK_MIN) or, within the rounding of Phi, lower the marginal error; otherwise the plain
(over-relaxed) Sinkhorn steps of the caller take over, and Newton is tried again after twice as
many of them as the last time. Work is counted in Sinkhorn iterations: a CG iteration (two
mat-vecs) and a trial point (a soft-min and a mat-vec) count one each, so max_iter bounds the
work as it does for plain Sinkhorn. On small problems (DENSE_MAX_ROWS), once CG needs more work than
a direct solve, the Newton systems are solved by Cholesky instead, damped as Levenberg-Marquardt
does; such a step counts n / 16 (see :func:`_dense_work`). On larger ones CG is preconditioned by
the Newton system of the plan's large entries, sparse at small reg and factored by SuperLU (see
KEEP): it is the Hessian but for the tails, and CG corrects for those in a few iterations. Near
the solution at small reg the error then falls by a factor of about 3 per step, not
quadratically: blocks of rows coupled only by tails of the plan need moves of a few reg, where the
quadratic model of the exponentials holds for about one reg at a time.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import scipy.linalg.lapack
import scipy.sparse
import scipy.sparse.linalg

from . import sinkhorn as _sk
from ._kernels import flushed_plan, hessian_product, laplacian_system, newton_direction, sparse_plan

NEWTON_AFTER = 30      # plain iterations at the final reg first: easy problems finish there, and
                       # Newton's quadratic model is poor far from the solution
START_ERR = 1e-2       # Newton starts once the error is below this times the mass (or after twice the
                       # wait): from 0.03-0.2 (30 plain steps at reg 1e-4 x max C) three Newton
                       # steps did not halve it, plain steps reach 1e-2 in a few dozen
CG_MAX = 300           # conjugate-gradient iterations per Newton step at most (truncated Newton:
                       # any CG iterate is an ascent direction)
FORCING_MAX = 0.1      # CG stops at a relative residual min(FORCING_MAX, sqrt(err / mass))
                       # (Eisenstat and Walker 1996: superlinear local convergence)
ARMIJO = 1e-4          # sufficient increase of Phi, times the step and the slope
BACKTRACK_MIN = 1.0 / 16  # shortest step tried before falling back to plain steps
PHI_ULPS = 64.0        # rounding of Phi: this many ulps of |a|.|f| + |b|.|g|
DIAG_MIN = 1e-6        # Jacobi preconditioner: diagonal entries below this times P 1 use P 1
PROGRESS_STEPS = 3     # Newton steps that must halve the best marginal error, or plain steps take
PROGRESS_GAIN = 0.5    # over (Phi can creep up along a near-null mode while the error stalls)
COLUMN_SLACK = 0.1     # the columns of a Newton point must be exact to this fraction of tol x mass
PLAN_MAX_PAIRS = 2**22  # up to this size CG runs on the plan itself, entries below PLAN_TINY x the
PLAN_TINY = 1e-100      # mass flushed to 0 (products of two stay far from subnormal: those cost
                        # 2-3x per operation); above PLAN_MAX_PAIRS, on the kept kernel
DENSE_MAX_ROWS = 512   # up to this many rows, once a CG solve needed DENSE_AFTER x the work of a
DENSE_AFTER = 2.0      # dense step, the Newton systems are solved directly (Cholesky of the formed
                       # Hessian, ~1 ms at 256 rows): Jacobi CG needs hundreds of iterations per step
                       # at reg 1e-4 x max C (300 at n = 64 near the solution), a few at 1e-2
KEEP = 1e-2            # above DENSE_MAX_ROWS CG is preconditioned by the Newton system of the plan's
                       # entries >= KEEP x a_i, factored (sparse): 2-D clouds at reg 1e-4 x max C,
                       # 10-25 CG iterations a step against 40-300 with Jacobi; n = 5000: 1.14-2.01
                       # -> 0.49-0.61 x the mat-vec unit (a dense step there takes seconds);
                       # n = 1000-2000 0.40-0.87 against 0.59-1.18 with dense steps up to 2048 rows
COUPLINGS_MAX = 512    # ... unless its couplings would exceed this many per row (Jacobi CG instead)
FACTOR_COST = 100.0    # a factorisation counts this many iterations per n m entries of its factors
                       # (measured 11-13 iterations at n = 1000-5000, ~0.1 n m entries)
DENSE_SPEEDUP = 8.0    # BLAS-3 products against the mat-vecs of an iteration, flop for flop
LM_DAMPING = 1e-2      # the dense system gets LM_DAMPING x (err / mass) x diag(P 1) added
                       # (Levenberg-Marquardt, damping proportional to the residual: Yamashita and
                       # Fukushima 2001): blocks of rows coupled below rounding otherwise get steps
                       # of thousands of reg from the rounding of their residuals (measured at
                       # n = 64, reg 1e-4 x max C: no progress); 1e-4 .. 1 needed as many steps
STEP_MAX = 20.0        # a step moves f by at most this many reg (spread of d): the plan changes by
                       # e^20 at most, the quadratic model says nothing about larger moves (CG's
                       # iterates can be huge along near-null modes: nearly uncoupled points)


class _Point(NamedTuple):
    """Potentials with g = T(f), the plan P = diag(u) K diag(v), its row sums, row error, Phi."""
    f: np.ndarray
    g: np.ndarray
    K: np.ndarray
    u: np.ndarray
    v: np.ndarray
    rows: np.ndarray
    err: float
    phi: float


class Problem(NamedTuple):
    """The data of a Newton phase: cost operand, weights (and logs, 1/b with 0 for b = 0), reg,
    tol x mass, and the buffer of the flushed plan for CG (empty (0, 0) above PLAN_MAX_PAIRS)."""
    cost: object
    a: np.ndarray
    b: np.ndarray
    log_a: np.ndarray
    log_b: np.ndarray
    inv_b: np.ndarray
    reg: float
    tol_mass: float
    plan: np.ndarray


def available(cost, reg_m, tol):
    """Newton applies: balanced, a tolerance, and a kept kernel (clouds: on their dense matrix)."""
    matrix = getattr(cost, "dense", cost)
    return math.isinf(reg_m) and tol > 0 and matrix is not None and matrix.K is not None


def _point(prob, f, T_g):
    """g = T(f) and the plan operator at (f, g); None if no kernel fits."""
    fast = prob.cost.compiled_point(f, prob.log_a, prob.log_b, prob.a, prob.b, prob.reg, T_g)
    if fast is not None:
        K, u, v, rows, err, phi, col_err = fast
        if col_err <= COLUMN_SLACK * prob.tol_mass and math.isfinite(err) and math.isfinite(phi):
            return _Point(f, T_g.copy(), K, u, v, rows, err, phi)
    _sk._softmin(prob.cost, 1, f, prob.log_a, prob.reg, T_g)
    g = T_g.copy()
    op = prob.cost.plan_operator(f, g, prob.log_a, prob.log_b, 1.0 / prob.reg)
    if op is None:
        return None
    K, u, v = op
    if np.abs(v * (u @ K) - prob.b).sum() > COLUMN_SLACK * prob.tol_mass:
        # after a long step the kept kernel can leave the columns short of exact: redo g = T(f)
        # in the log domain (it rebuilds K at f)
        prob.cost.exact_cols(f, g, prob.log_a, 1.0 / prob.reg)
        T_g[:] = g
        K, u, v = prob.cost.plan_operator(f, g, prob.log_a, prob.log_b, 1.0 / prob.reg)
    rows = u * (K @ v)
    err = float(np.abs(rows - prob.a).sum())
    phi = float(prob.a @ f + prob.b @ g)
    if not (math.isfinite(err) and math.isfinite(phi)):
        return None
    return _Point(f, g, K, u, v, rows, err, phi)


def _direction(prob, p, forcing, cg_max, dense):
    """The Newton direction: above DENSE_MAX_ROWS by :func:`_sparse_direction`; with ``dense`` (and
    a plan buffer) by Cholesky (:func:`_dense_direction`); else (or if those fail) Jacobi CG on
    (diag(P 1) - P diag(1/b) P^T) d = eps (a - P 1); (d, iterations of work)."""
    rows = p.rows
    if len(rows) > DENSE_MAX_ROWS:
        out = _sparse_direction(prob, p, forcing, cg_max)
        if out is not None:
            return out
    elif dense and prob.plan.size and _dense_work(len(rows)) <= cg_max:
        d = _dense_direction(prob, p)
        if d is not None:
            return d, _dense_work(len(rows))
    x = np.empty(len(rows))
    k = newton_direction(p.K, p.u, p.v, prob.inv_b, prob.a, rows, prob.reg, PLAN_TINY * prob.a.sum(), prob.plan,
                         forcing, DIAG_MIN, cg_max, x)
    return x, k


def _sparse_direction(prob, p, forcing, cg_max):
    """The Newton direction by conjugate gradients preconditioned with the Newton system of the
    plan's entries >= KEEP x a_i (:func:`_truncated_system`, factored by SuperLU); (d, work) with
    the factorisation counted (see FACTOR_COST), or None if that system is too dense, singular or
    costs more than ``cg_max``."""
    n, m = p.K.shape
    if prob.plan.size:  # CG on the flushed plan: no subnormal products (see PLAN_TINY)
        flushed_plan(p.K, p.u, p.v, PLAN_TINY * prob.a.sum(), prob.plan)
        K, u, v, w = prob.plan, np.ones(n), np.ones(m), prob.inv_b
    else:
        K, u, v, w = p.K, p.u, p.v, p.v * p.v * prob.inv_b
    system = _truncated_system(prob, p, K, u, v)
    if system is None:
        return None
    try:
        lu = scipy.sparse.linalg.splu(system, permc_spec="MMD_AT_PLUS_A",
                                      options={"SymmetricMode": True})
    except RuntimeError:  # singular
        return None
    work = 2 + math.ceil(FACTOR_COST * (lu.L.nnz + lu.U.nnz) / (n * m))  # two passes over the plan
    if work >= cg_max:
        return None
    res = prob.reg * (prob.a - p.rows)
    stop = forcing * np.linalg.norm(res)
    x, Md = np.zeros(n), np.empty(n)
    z = lu.solve(res)
    d, rz = z, res @ z
    for k in range(1, cg_max - work + 1):
        curvature = hessian_product(K, u, w, p.rows, d, Md)
        if not curvature > 0.0:  # rounding at the null space
            break
        alpha = rz / curvature
        x += alpha * d
        res -= alpha * Md
        if np.linalg.norm(res) <= stop:
            break
        z = lu.solve(res)
        rz_old, rz = rz, res @ z
        d = z + (rz / rz_old) * d
    return x, work + k


def _truncated_system(prob, p, K, u, v):
    """The Newton system diag(P 1) - P diag(1/b) P^T of the plan P = diag(u) K diag(v) with its
    entries below KEEP x a_i left out, in CSC form: the Laplacian of the kept couplings, its
    diagonal the sum of the other couplings plus what the left-out mass adds (sums of positive
    terms, as in :func:`_dense_direction`), damped likewise; None when it has more than
    COUPLINGS_MAX x n entries."""
    n, m = K.shape
    indptr, indices, data, dropped_rows, dropped_cols = sparse_plan(K, u, v, KEEP * prob.a)
    if (np.bincount(indices, minlength=m).astype(float) ** 2).sum() > COUPLINGS_MAX * n:
        return None
    S = scipy.sparse.csr_matrix((data, indices, indptr), shape=(n, m))
    W = (S @ scipy.sparse.diags(prob.inv_b) @ S.T).tocsr()
    W.setdiag(0.0)
    W.eliminate_zeros()
    # rows - W_ii = the other couplings + the row's left-out mass + its kept mass times the
    # fraction of each column left out (columns exact)
    diag = np.asarray(W.sum(axis=1)).ravel() + dropped_rows + S @ (dropped_cols * prob.inv_b)
    diag += LM_DAMPING * p.err / prob.a.sum() * p.rows
    diag[p.rows <= 0.0] = 1.0
    return (scipy.sparse.diags(diag) - W).tocsc()


def _dense_work(n):
    """Work of a dense Newton step in Sinkhorn iterations (two mat-vecs, 4 n m flops): the Hessian
    is 2 n^2 m flops (and its Cholesky n^3 / 3), but in BLAS-3 products, DENSE_SPEEDUP times faster."""
    return max(1, int(math.ceil(n / (2.0 * DENSE_SPEEDUP))))


def _dense_direction(prob, p):
    """The Newton system solved by Cholesky on the formed Hessian M = diag(P 1) - P diag(1/b) P^T,
    written as the Laplacian of the couplings W = P diag(1/b) P^T (its diagonal the sum of the
    other couplings of the row, equal to P 1 - W_ii while the columns are exact: the subtraction
    lost every digit of rows nearly decoupled at small reg, and Cholesky then failed), damped by
    LM_DAMPING (err / mass) diag(P 1), which also removes the null space (the constants); None if
    Cholesky fails (CG then runs)."""
    S = prob.plan  # S = P diag(1/b)^(1/2), so that W = S S^T
    flushed_plan(p.K, p.u, p.v * np.sqrt(prob.inv_b), PLAN_TINY * prob.a.sum(), S)
    M = S @ S.T
    laplacian_system(M, p.rows, LM_DAMPING * p.err / prob.a.sum())
    # M is symmetric: M.T is the same matrix in Fortran order, factored in place without a copy
    factor, info = scipy.linalg.lapack.dpotrf(M.T, overwrite_a=True, clean=False)
    if info != 0:
        return None
    d, info = scipy.linalg.lapack.dpotrs(factor, prob.reg * (prob.a - p.rows))
    return d if info == 0 and np.isfinite(d).all() else None


def _line_search(prob, p, d, T_g, max_trials):
    """The first of steps 1, 1/2, ... >= BACKTRACK_MIN that is accepted (None if none of the first
    ``max_trials`` is), then, from a full step, steps 2, 4, ... while they lower the error and do not
    lower Phi (:func:`_extend`); and the trials made."""
    d = d - (prob.a @ d) / prob.a.sum()  # constants are the Hessian's null space: CG drifts
    # along them by rounding (f reached 1e8 at reg 0.5, leaving 8 digits); a.f stays put instead
    spread = float(d.max() - d.min())
    if spread > STEP_MAX * prob.reg:
        d = d * (STEP_MAX * prob.reg / spread)
        spread = STEP_MAX * prob.reg
    slope = float((prob.a - p.rows) @ d)
    rounding = PHI_ULPS * np.finfo(float).eps * (prob.a @ np.abs(p.f) + prob.b @ np.abs(p.g))
    t, trials = 1.0, 0
    while t >= BACKTRACK_MIN and trials < max_trials:
        trials += 1
        q = _point(prob, p.f + t * d, T_g)
        if q is None:
            return None, trials
        gain = q.phi - p.phi
        if gain >= ARMIJO * t * slope and gain > rounding or (q.err < p.err and gain >= -rounding):
            if t < 1.0:
                return q, trials
            return _extend(prob, p, q, d, spread, T_g, max_trials - trials, rounding)
        t *= 0.5
    return None, trials


def _extend(prob, p, q, d, spread, T_g, max_trials, rounding):
    """From the accepted full step q = p + d: steps 2, 4, ... (moving f by at most STEP_MAX reg) as
    long as each lowers the error and keeps Phi; (the last such point, trials including the first).
    Near the solution at small reg the damped Newton step moves the rows coupled only by tails of
    the plan by a few reg, and the error falls ~3x; twice that step lowered it ~2x more (n = 256,
    reg 1e-4 x max C, every step of a run), for a trial, a tenth of a dense step's cost."""
    trials, t = 1, 1.0
    while trials <= max_trials and 2.0 * t * spread <= STEP_MAX * prob.reg:
        trials += 1
        r = _point(prob, p.f + 2.0 * t * d, T_g)
        if r is None or not (r.err < q.err and r.phi >= q.phi - rounding):
            T_g[:] = q.g  # the shift of the next soft-min: the accepted point's
            break
        q, t = r, 2.0 * t
    return q, trials


class Outcome(NamedTuple):
    """Where the Newton phase stopped: potentials (g = T(f)), iterations of work, and why."""
    f: np.ndarray
    g: np.ndarray
    work: int
    converged: bool
    floor: bool
    gave_up: bool  # no step was accepted, or no kernel fits: plain Sinkhorn continues from (f, g)


def newton(cost, a, b, f, reg, tol, budget, floor):
    """Newton phase from f at the target reg, within ``budget`` (>= 1) iterations of work."""
    log_a, log_b = _sk._log(a), _sk._log(b)
    mass = float(a.sum())
    plan = np.empty((len(a), len(b)) if len(a) * len(b) <= PLAN_MAX_PAIRS else (0, 0))
    prob = Problem(cost, a, b, log_a, log_b, np.divide(1.0, b, out=np.zeros_like(b), where=b > 0), reg,
                   tol * mass, plan)
    T_g = np.zeros(len(b))
    _sk._softmin(cost, 1, f, log_a, reg, T_g)  # the shifts of the first pass
    p, work = _point(prob, f, T_g), 1
    if p is None:
        return Outcome(f, T_g.copy(), work, False, False, True)
    # small problems: CG first (a few iterations a step at moderate reg), Cholesky from the first
    # step whose CG needed DENSE_AFTER times the work of a dense step (its iterate is still used)
    best, stalled, dense = p, 0, False
    small = len(a) <= DENSE_MAX_ROWS and plan.size > 0
    while p.err > tol * mass and work + 2 <= budget:  # one CG iteration and one trial at least
        if floor.reached(p.err, p.f, p.g):
            return Outcome(best.f, best.g, work, False, True, False)
        cg_max = min(CG_MAX, budget - work - 1)
        if small and not dense:
            cg_max = min(cg_max, int(DENSE_AFTER * _dense_work(len(a))))
        d, k = _direction(prob, p, min(FORCING_MAX, math.sqrt(p.err / mass)), cg_max, dense)
        dense = small and (dense or k >= cg_max)
        q, trials = _line_search(prob, p, d, T_g, budget - work - k)
        work += k + trials
        if q is None or stalled + 1 >= PROGRESS_STEPS and q.err > PROGRESS_GAIN * best.err:
            # no step, or the error stalls: at the precision floor the run stops there; else plain
            # (relaxed) steps take over and Newton is tried again later
            if best.err <= floor.level(best.f, best.g):
                return Outcome(best.f, best.g, work, False, True, False)
        if q is None:
            return Outcome(p.f, p.g, work, False, False, work < budget)
        p = q
        stalled = 0 if p.err <= PROGRESS_GAIN * best.err else stalled + 1
        best = p if p.err < best.err else best
        if stalled >= PROGRESS_STEPS:
            return Outcome(best.f, best.g, work, False, False, work < budget)
    return Outcome(best.f, best.g, work, best.err <= tol * mass, False, False)

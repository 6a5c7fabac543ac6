"""Entropic optimal transport: log-domain Sinkhorn with epsilon scaling, on cost matrices or on
point clouds (costs recomputed on the fly), balanced or unbalanced (KL marginal relaxation)."""
from __future__ import annotations

import math
import warnings
from typing import NamedTuple

import numpy as np
from scipy.special import logsumexp

from .._costs import check_cost_range, cost_code
from .._result import ConvergenceWarning, OTResult, Status
from .._threads import threads_for
from .._validation import (check_balanced, check_count, check_entropic_masses, check_point_clouds,
                           check_positive, check_problem, check_weights)
from ..lp.network_simplex import exact, is_assignment
from . import _newton, _truncated
from ._kernels import is_symmetric, marginal_error
from ._problem import MatrixCost, PointCost

DEFAULT_MAX_ITER = 10_000
RELAX_SPAN = 8           # iterations over which the contraction of the error is measured
HINT_AFTER = 1           # a level of the truncated cascade takes the coarser levels' factor after this
                         # many plain steps (they damp the prolongation's local errors, which a factor
                         # w damps only by w - 1 a step). n = 1e5, whole run after 1 / after 4 steps:
                         # Gaussian clouds 272 / 296 s (finest level 17 / 23 iterations, 3.2 s each),
                         # uniform 95 / 63 s (43 / 25; 16 plain); the Gaussian is the one near 5 min
RELAX_MAX = 1.98         # cap on the over-relaxation factor (2 would not converge)
RELAX_STEP = 0.01        # w is raised only by more than this fraction (and the window restarts)
RELAX_GUARD = 100.0      # an error this many times the error at the switch undoes the relaxation,
                         # or one above 0.9 of the mass (and twice that error): the L1 error
                         # saturates at the mass when iterates diverge towards plans of no mass
RELAX_BACKOFF = 0.9      # after such a failure the cap on w - 1 shrinks by this factor
EXP_CLIP = 700.0         # exponent cap in marginal-error estimates: exp(700) is finite
REG_MIN = 1e-12          # reg below this times the cost spread is refused: C / reg then has no
                         # digit left of the differences that decide the plan (use the exact solver)
FLOOR_SPAN = 100         # at the final reg, this many iterations without a 10% gain on the best
FLOOR_GAIN = 0.9         # error (slow convergence gains that in 100 iterations at contraction
                         # 0.999), while it is below FLOOR_ULPS ulps of (|C| + |f| + |g|) / reg
FLOOR_ULPS = 16.0        # times the mass, is the float64 precision floor: the run stops there
LADDER_MIN_RATIO = 256.0  # alternating Sinkhorn anneals only when reg is below the spread of the costs
                          # over this: above it plain iterations from zero need as many or fewer
                          # (2-D clouds, n = 64..1000: 16 against 20 at 1/32, 41 against 48 at 1/200;
                          # 136 against 96 at 1/1000)
WARM_MAX_PAIRS = 512 * 512  # a run that would anneal starts instead from the exact solution's potentials
WARM_MAX_REG = 2e-4      # (reg -> 0) where that solution is cheap: an assignment (uniform weights,
                         # n = m <= 1000: auction, 1-50 ms at n = 1000), or up to WARM_MAX_PAIRS pairs
                         # at reg <= WARM_MAX_REG x the cost spread (the simplex on weighted n = 512
                         # took 60-80 ms, 2-4x the annealed run at 1e-3, as much as the gain at 1e-4).
                         # 2-D clouds at 1e-4 x max C, exact solve included: n = 64..1000, 0.25-0.75x
                         # the time of annealing; n = 2000 (simplex 0.35-1.3 s) gained nothing
SANITY = 10.0            # a converged run whose evaluated plan misses its marginals by more than
                         # this times tol (plus the floor) is a NUMERICAL_ERROR


class _Run(NamedTuple):
    """Outcome of an iteration: potentials, iterations, whether tol was met, the annealing level
    it stopped at (reg when the ladder was done), whether it stopped at the precision floor, and
    the largest over-relaxation factor it used."""
    f: np.ndarray
    g: np.ndarray
    n_iter: int
    converged: bool
    at: float
    floor: bool = False
    omega: float = 1.0


def _check_scale(reg, cost):
    """reg against the costs (after the options were checked)."""
    scale = cost.scale
    if not math.isfinite(scale):
        raise ValueError("the costs overflow float64 (their spread is inf); rescale them")
    if not (math.isfinite(1.0 / reg) and math.isfinite(cost.max_abs / reg)):
        raise ValueError(f"reg={reg:.3g} is too small for float64 at costs of magnitude "
                         f"{cost.max_abs:.3g} (1 / reg or C / reg overflows); multiply C and reg by "
                         "one large factor")
    if reg < REG_MIN * scale:
        raise ValueError(f"reg={reg:.3g} is below {REG_MIN:g} x the spread of the costs ({scale:.3g}): "
                         "float64 Sinkhorn cannot resolve it; use otsolve.exact (reg = 0) or a larger reg")


def _check_options(reg, tol, max_iter, eps_scaling, reg_m):
    reg = check_positive(reg, "reg")
    tol = check_positive(tol, "tol", allow_zero=True)
    tol = tol or -math.inf  # 0: exactly max_iter iterations (no error is <= -inf; no floor stop)
    max_iter = check_count(max_iter, "max_iter")
    if not isinstance(eps_scaling, (bool, np.bool_)):
        raise TypeError(f"eps_scaling must be True or False; got {eps_scaling!r}")
    reg_m = math.inf if reg_m is None else check_positive(reg_m, "reg_m", allow_inf=True)
    return reg, tol, max_iter, bool(eps_scaling), reg_m


def _schedule(scale, reg, eps_scaling, min_ratio=1.0):
    """Geometric annealing of reg from the cost scale down to the target (Schmitzer 2019):
    scale * 2^-k, then reg; none when reg >= scale / min_ratio. eps halves exactly between
    annealing levels (a kept Gibbs kernel is then squared, not recomputed); the last step, by a
    factor in (1, 2], rebuilds it exactly."""
    if not eps_scaling or scale <= min_ratio * reg:
        return [reg]
    levels = int(math.ceil(math.log2(scale / reg)))
    return [scale * 0.5 ** k for k in range(levels)] + [reg]


def _log(w):
    with np.errstate(divide="ignore"):
        return np.log(w)  # -inf for zero weights: those rows and columns get no mass


def _softmin(cost, side, pot, log_w, eps, T):
    """T <- -eps * log sum_j w_j exp((pot_j - c_ij) / eps), the c-transform softened by eps;
    T holds the previous result on entry, which serves as the shift of the exponentials."""
    if cost.compiled_softmin(side, pot, log_w, eps, T):
        return
    lse = T / -eps
    cost.softmin(side, log_w + pot / eps, 1.0 / eps, lse)
    T[:] = -eps * lse


def _row_error(a, f, T, eps, reg_m):
    """L1 violation of the first-order condition on the rows of the plan of (f, g), where
    T = softmin(g): rows are a exp((f - T)/eps), their target a (balanced) or a exp(-f/reg_m)."""
    if math.isinf(reg_m):
        return _marginal_error(a, f, T, eps)
    d = np.minimum((f - T) / eps, EXP_CLIP)
    return float(np.abs(a * (np.exp(d) - _exp_clip(-f / reg_m))).sum())


def _exp_clip(z):
    return np.exp(np.minimum(z, EXP_CLIP))


class _Relaxation:
    """Adaptive over-relaxation f <- (1 - w) f + w T(g) at the final reg (Thibault et al. 2017;
    Lehmann et al. 2021). Sinkhorn is a nonlinear Gauss-Seidel method; with theta the contraction
    of its slowest mode, w = 2 / (1 + sqrt(1 - theta)) is the optimal SOR factor. theta is first
    read from plain iterations, then re-estimated from the relaxed contraction mu by
    theta = (mu + w - 1)^2 / (mu w^2) (Hageman and Young 1981, adaptive SOR), w only growing.
    If the error grows, the last good iterate is restored and the estimate starts afresh from
    w = 1 with its cap on w - 1 shrunk by RELAX_BACKOFF: far from the solution the contraction
    read off the error can mislead (measured on 80 problems at reg 1e-4 .. 1e-2 of the costs:
    a factor 0.9 needed half the iterations of 0.5 and none failed). Plain steps also finish
    the run, so that the columns of the plan are exact. ``hint``: a factor a coarser solve of the
    same clouds reached, taken after HINT_AFTER plain steps instead of climbing there again window
    by window."""

    def __init__(self, mass, hint=1.0):
        self.omega, self.cap, self.history, self.saved, self.since = 1.0, RELAX_MAX, [], None, 0
        self.mass, self.peak, self.hint = mass, 1.0, hint

    def update(self, err, f, g):
        """Record the error of (f, g); return a pair (f, g) to restore, or None."""
        self.history.append(err)
        self.since += 1
        if self.omega > 1.0 and not err <= self._guard():
            self.cap = 1.0 + RELAX_BACKOFF * (self.omega - 1.0)
            self.omega, self.history, self.since = 1.0, [self.saved[0]], 0
            return self.saved[1], self.saved[2]
        if self.hint > 1.0 and self.since == HINT_AFTER:  # the hint, once plain steps smoothed
            self.omega, self.saved, self.since = min(self.hint, self.cap), (err, f.copy(), g.copy()), 0
            self.peak, self.hint = max(self.peak, self.omega), 1.0
            return None
        if self.cap <= 1.0 or self.since <= RELAX_SPAN:
            return None
        if not self.history[-1 - RELAX_SPAN] > 0.0:  # an exact fixed point (tol = 0 runs on)
            return None
        mu = (err / self.history[-1 - RELAX_SPAN]) ** (1.0 / RELAX_SPAN)
        w = self.omega
        if w - 1.0 < mu < 1.0:  # below the optimal factor (or plain): estimate theta, raise w
            theta = min((mu + w - 1.0) ** 2 / (mu * w * w), 1.0)
            w_new = min(2.0 / (1.0 + math.sqrt(1.0 - theta)), self.cap)
            if w_new > w * (1.0 + RELAX_STEP):
                self.omega, self.saved, self.since = w_new, (err, f.copy(), g.copy()), 0
                self.peak = max(self.peak, w_new)
        return None

    def _guard(self):
        saved = self.saved[0]
        return max(2.0 * saved, min(RELAX_GUARD * saved, 0.9 * self.mass))

    def finish(self):
        """Plain steps from now on (the tolerance is met by the relaxed iterate)."""
        self.omega, self.cap = 1.0, 1.0


def _iterate(cost, a, b, reg, reg_m, tol, max_iter, eps_scaling, init=None, hint=1.0):
    """Alternating log-domain updates f = k T(g), g = k T(f), k = reg_m / (reg_m + eps),
    from the potentials ``init`` (default zero), until the row error is below tol times the
    mass of a, the precision floor, or max_iter; over-relaxed at the final reg (``hint``: see
    :class:`_Relaxation`). Returns a :class:`_Run`."""
    log_a, log_b = _log(a), _log(b)
    f, g = (np.zeros(len(a)), np.zeros(len(b))) if init is None else init
    T_f, T_g = f.copy(), g.copy()
    schedule = _schedule(cost.scale, reg, eps_scaling, LADDER_MIN_RATIO)
    mass = float(a.sum())
    relax, floor = _Relaxation(mass, hint), _Floor(cost, reg, mass, tol)
    n_iter, err, at = 0, math.inf, schedule[0]
    best = (math.inf, f, g)  # the pair of least error at the final reg (f, g are never mutated)
    accelerate, newton_at, wait = _newton.available(cost, reg_m, tol), math.inf, _newton.NEWTON_AFTER
    balanced = math.isinf(reg_m)
    for level, eps in enumerate(schedule):
        final = level == len(schedule) - 1
        k = _damping(eps, reg_m)
        while n_iter < max_iter:
            at = eps
            ready = err <= _newton.START_ERR * mass or n_iter >= newton_at + wait
            if final and n_iter >= newton_at and ready:
                # slow so far: Newton steps (see _newton), once the error is small or after as many
                # plain steps again
                out = _newton.newton(cost, a, b, f, reg, tol, max_iter - n_iter, floor)
                n_iter += out.work
                if not out.gave_up:
                    return _Run(out.f, out.g, n_iter, out.converged, reg, out.floor, relax.peak)
                f, g, relax, wait = out.f, out.g, _Relaxation(mass), 2 * wait
                newton_at = n_iter + wait  # plain steps first, twice as many each time
                continue
            # balanced, at the final reg: the whole iteration in one compiled call where it can be
            # (the next (f, g) with the current relaxation, used unless the checks below change it)
            w = relax.omega
            step = cost.compiled_iteration(f, g, log_a, log_b, a, eps, w, EXP_CLIP, T_f, T_g) \
                if final and balanced else None
            if step is None:
                _softmin(cost, 0, g, log_b, eps, T_f)
            if final:
                if accelerate and newton_at == math.inf:
                    newton_at = n_iter + wait
                err = _row_error(a, f, T_f, eps, reg_m) if step is None else step[0]
                best = min(best, (err, f, g), key=lambda t: t[0])
                if err <= tol * mass and relax.omega == 1.0:  # meets tol, its columns are exact
                    return _Run(f, g, n_iter, True, reg, omega=relax.peak)
                if err <= tol * mass:
                    relax.finish()
                if floor.reached(err, f, g):
                    f, g = best[1], best[2]
                    return _Run(f, _close(cost, a, b, f, reg, reg_m, T_g), n_iter, False, reg, True)
                # not the error of the zero potentials (no annealing): it scales with the mass
                # squared, and the contraction read from it would too
                restore = relax.update(err, f, g) if n_iter or init is not None else None
                if restore is not None:
                    f, g = restore
                    continue
            if step is not None and relax.omega == w:
                f, g = step[1], step[2]
            else:
                w = relax.omega
                f = k * T_f if w == 1.0 else (1.0 - w) * f + w * k * T_f
                _softmin(cost, 1, f, log_a, eps, T_g)
                g = k * T_g if w == 1.0 else (1.0 - w) * g + w * k * T_g
            if not balanced:
                f, g = _mass_shift(a, b, f, g, reg_m)
            n_iter += 1
            if not final:
                break
    if best[0] < err:  # stopped by max_iter: the best pair, not the last
        f, g = best[1], best[2]
    return _Run(f, _close(cost, a, b, f, reg, reg_m, T_g), n_iter, False, at)


class _Floor:
    """The float64 precision floor of the marginal error at the final reg: potentials and costs
    of magnitude M are known to an ulp of M, so the exponents (f + g - C) / reg to about
    M / reg ulps. The run stops when the best error has not improved by FLOOR_GAIN in FLOOR_SPAN
    iterations and is below FLOOR_ULPS such ulps times the mass."""

    def __init__(self, cost, reg, mass, tol):
        self.reg, self.mass, self.c_max = reg, mass, cost.max_abs
        self.active = tol > -math.inf  # tol = 0 asks for exactly max_iter iterations
        self.best, self.since = math.inf, 0

    def reached(self, err, f, g):
        if not self.active:
            return False
        if err <= FLOOR_GAIN * self.best:
            self.best, self.since = err, 0
            return False
        self.since += 1
        return self.since >= FLOOR_SPAN and self.best <= self.level(f, g)

    def level(self, f, g):
        return _floor_level(self.c_max + np.abs(f).max() + np.abs(g).max(), self.reg, self.mass)


def _damping(eps, reg_m):
    return 1.0 if math.isinf(reg_m) else reg_m / (reg_m + eps)


def _close(cost, a, b, f, reg, reg_m, T_g):
    """g = k T(f) at the target reg: a run stopped anywhere (inside the annealing ladder, or
    after a relaxed step) then has a plan with exact columns (balanced) or at their fixed point
    (unbalanced), so of the right mass and finite whatever the eps that f came from."""
    _softmin(cost, 1, f, _log(a), reg, T_g)
    return _damping(reg, reg_m) * T_g


def _solve(cost, a, b, reg, reg_m, tol, max_iter, eps_scaling, symmetric):
    """The run of :func:`sinkhorn` and :func:`sinkhorn_points` (untruncated): averaged updates on
    a symmetric problem, else alternating ones, annealed or started at the exact solution."""
    if symmetric:
        return _iterate_symmetric(cost, a, reg, tol, max_iter, eps_scaling)
    anneals = len(_schedule(cost.scale, reg, eps_scaling, LADDER_MIN_RATIO)) > 1
    init = _exact_start(cost, a, b, reg, reg_m, tol) if anneals else None
    return _iterate(cost, a, b, reg, reg_m, tol, max_iter, eps_scaling and init is None, init)


def _exact_start(cost, a, b, reg, reg_m, tol):
    """Potentials of the exact (reg -> 0) solution, in the frame of the costs the kernels read, for
    a balanced problem with Newton steps whose run would anneal, where that solution is cheap
    (see WARM_MAX_PAIRS); the Newton phase then finishes from them. Else None."""
    matrix = getattr(cost, "dense", cost)
    n, m = cost.shape
    cheap = is_assignment(a, b) or (n * m <= WARM_MAX_PAIRS and reg <= WARM_MAX_REG * cost.scale)
    if not (cheap and _newton.available(cost, reg_m, tol)):
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        res = exact(matrix.C, a / a.sum(), b / b.sum())
    if res.status != Status.OPTIMAL or not (np.isfinite(res.f).all() and np.isfinite(res.g).all()):
        return None
    return res.f, res.g


def _iterate_symmetric(cost, a, reg, tol, max_iter, eps_scaling):
    """The symmetric problem OT(a, a): f <- (f + T(f)) / 2, whose fixed point is the potential
    (f, f); averaging damps the oscillation of plain updates (Feydy et al. 2019). Returns a
    :class:`_Run` as :func:`_iterate`; g is f once converged."""
    log_a = _log(a)
    f, T = np.zeros(len(a)), np.zeros(len(a))
    schedule = _schedule(cost.scale, reg, eps_scaling)
    mass = float(a.sum())
    floor = _Floor(cost, reg, mass, tol)
    n_iter, at = 0, schedule[0]
    for level, eps in enumerate(schedule):
        final = level == len(schedule) - 1
        while n_iter < max_iter:
            at = eps
            _softmin(cost, 0, f, log_a, eps, T)
            if final:  # rows (and columns) of (f, f)
                err = _marginal_error(a, f, T, eps)
                if err <= tol * mass:
                    return _Run(f, f, n_iter, True, reg)
                if floor.reached(err, f, f):
                    return _Run(f, _close(cost, a, a, f, reg, math.inf, T.copy()), n_iter, False, reg, True)
            f = T.copy() if n_iter == 0 else 0.5 * (f + T)
            n_iter += 1
            if not final:
                break
    return _Run(f, _close(cost, a, a, f, reg, math.inf, T.copy()), n_iter, False, at)


def _marginal_error(a, f, T, eps):
    """L1 error of the marginal a exp((f - T) / eps) of the plan of (f, g), T = softmin(g)."""
    return marginal_error(a, f, T, eps, EXP_CLIP)


def _mass_shift(a, b, f, g, reg_m):
    """(f + s, g - s) with the best s for the unbalanced dual, s = reg_m/2 log(A/B), A = a.exp(-f/reg_m),
    B = b.exp(-g/reg_m): the one direction the updates barely move along when reg_m >> reg
    (translation-invariant Sinkhorn, Sejourne, Vialard, Peyre 2022)."""
    with np.errstate(divide="ignore"):
        s = 0.5 * reg_m * (logsumexp(np.log(a) - f / reg_m) - logsumexp(np.log(b) - g / reg_m))
    return f + s, g - s


def _evaluate(cost, a, b, f, g, reg, reg_m, want_plan):
    """Plan and objectives of (f, g): (f, g, P, value, value_linear, dual, marginal error,
    max dual violation), with balanced potentials shifted so that a.f == b.g. The potentials
    come in for the costs the kernels read, C - cost.offset, and go out for C."""
    sa, sb = a.sum(), b.sum()
    balanced = math.isinf(reg_m)
    if balanced:  # (f + c, g - c) is the same solution: fix c as the exact solver does
        shift = (b @ g - a @ f) / (sa + sb)
        f, g = f + shift, g - shift
    P, stats, cols = cost.plan_stats(f, g, _log(a), _log(b), 1.0 / reg, want_plan)
    rows, mass = stats[:, 0], stats[:, 0].sum()
    # the KL terms and P - a b^T summed without cancellation (exact at large reg)
    entropic, excess = reg * stats[:, 2].sum(), reg * stats[:, 4].sum()
    value_linear = float(stats[:, 1].sum() + cost.offset * mass)
    if cost.offset:  # balanced only: f + alpha, g + beta, alpha + beta = offset, a.f == b.g
        f, g = f + cost.offset * sb / (sa + sb), g + cost.offset * sa / (sa + sb)
    if balanced:
        value = value_linear + entropic
        dual = a @ f + b @ g - excess
        # truncated costs: what the skipped pairs may hold is added (an upper bound of the error)
        drop_rows, drop_cols = getattr(cost, "dropped_mass", (0.0, 0.0))
        err = max(np.abs(rows - a).sum() + drop_rows, np.abs(cols - b).sum() + drop_cols)
    else:
        value = value_linear + entropic + reg_m * (_kl(rows, a) + _kl(cols, b))
        dual = (-reg_m * (a @ np.expm1(np.minimum(-f / reg_m, EXP_CLIP)))
                - reg_m * (b @ np.expm1(np.minimum(-g / reg_m, EXP_CLIP))) - excess)
        err = max(np.abs(rows - a * _exp_clip(-f / reg_m)).sum(), np.abs(cols - b * _exp_clip(-g / reg_m)).sum())
    violation = max(float(stats[:, 3].max()), 0.0)
    return f, g, P, float(value), value_linear, float(dual), float(err), violation


def _status(run, max_iter, err, tol, mass, reg, finite, stacklevel=4, dropped=0.0):
    """Status and message of a run; warns unless it converged. ``dropped``: the bound of the mass
    of the pairs a truncated run skipped (included in err)."""
    if run.converged and finite and err > tol * mass >= err - dropped:
        message = (f"the kept pairs meet tol, but with the bound {dropped:.3g} of the mass skipped by the "
                   f"kernel truncation the marginal error may reach {err:.3g} > tol x mass = {tol * mass:.3g}")
        warnings.warn(message, ConvergenceWarning, stacklevel=stacklevel)
        return Status.MAX_ITER, message
    if not finite or (run.converged and err > SANITY * tol * mass
                       + _floor_level(np.abs(run.f).max() + np.abs(run.g).max(), reg, mass)):
        message = (f"the evaluated plan has marginal error {err:.3g} (tol {tol:g}): float64 cannot "
                   f"resolve reg={reg:.3g} for these costs; rescale them or raise reg")
        warnings.warn(message, ConvergenceWarning, stacklevel=stacklevel)
        return Status.NUMERICAL_ERROR, message
    if run.converged and err <= tol * mass:  # the rule holds for the plan returned, not only the iterates
        return Status.OPTIMAL, "converged"
    if run.converged:
        message = (f"the iterates met tol but the returned plan's marginal error {err:.3g} is above "
                   f"tol x mass = {tol * mass:.3g}: the float64 precision floor at reg={reg:.3g}; the plan "
                   "is as accurate as float64 allows")
    elif run.floor:
        message = (f"stopped after {run.n_iter} iterations at the float64 precision floor: the marginal "
                   f"error {err:.3g} stopped decreasing above tol (at reg={reg:.3g} the costs and "
                   "potentials leave no more digits); the plan is as accurate as float64 allows")
    else:
        where = (f"at reg={run.at:.3g} of the annealing ladder (target reg={reg:.3g}; the plan "
                 "comes from one closing step at the target)" if run.at > reg else f"at reg={reg:.3g}")
        message = (f"stopped after max_iter={max_iter} iterations {where} with marginal error "
                   f"{err:.3g} above tol; raise max_iter or tol")
    warnings.warn(message, ConvergenceWarning, stacklevel=stacklevel)
    return Status.MAX_ITER, message


def _floor_level(magnitude, reg, mass):
    """FLOOR_ULPS ulps of potentials (and costs) of this magnitude in the exponents, times the mass."""
    return FLOOR_ULPS * np.finfo(float).eps * magnitude / reg * mass


def _result(cost, a, b, run, reg, reg_m, tol, max_iter, want_plan):
    f, g, P, value, value_linear, dual, err, violation = _evaluate(cost, a, b, run.f, run.g, reg, reg_m,
                                                                   want_plan)
    finite = math.isfinite(value) and math.isfinite(dual) and math.isfinite(err)
    dropped = sum(getattr(cost, "dropped_mass", (0.0, 0.0)))
    status, message = _status(run, max_iter, err, tol, float(a.sum()), reg, finite, dropped=dropped)
    if hasattr(cost, "dropped_mass"):
        message += (f"; kernel truncation: the pairs skipped hold at most {dropped:.3g} of the mass "
                    "(included in marginal_error)")
    return OTResult(value=value, value_linear=value_linear, plan=P, f=f, g=g, status=status,
                    n_iter=run.n_iter, marginal_error=err, max_dual_violation=violation,
                    dual_value=dual, duality_gap=value - dual, message=message)


def _kl(p, q):
    """Generalised KL(p | q) = sum p log(p / q) - p + q, with 0 log 0 = 0."""
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(p > 0, p * np.log(p / q), 0.0)
    return float(terms.sum() - p.sum() + q.sum())


def sinkhorn(C, a=None, b=None, *, reg, tol=1e-9, max_iter=DEFAULT_MAX_ITER, eps_scaling=True,
             reg_m=None) -> OTResult:
    r"""Solve entropic optimal transport on a cost matrix by log-domain Sinkhorn iterations.

    .. math::
        \min_{P \ge 0,\ P 1 = a,\ P^T 1 = b} \langle C, P \rangle + \varepsilon\,
        \mathrm{KL}(P \,|\, a b^T), \qquad \mathrm{KL}(P|Q) = \sum P \log\tfrac{P}{Q} - P + Q

    With ``reg_m`` = :math:`\rho` the marginal constraints become penalties
    :math:`\rho\,\mathrm{KL}(P 1 | a) + \rho\,\mathrm{KL}(P^T 1 | b)` (unbalanced OT).
    Updates :math:`f_i = -\varepsilon \log \sum_j b_j e^{(g_j - C_{ij})/\varepsilon}` (times
    :math:`\rho / (\rho + \varepsilon)` if unbalanced), then the same for g, in fused parallel
    passes over C and C^T; :math:`\varepsilon` is annealed from the cost's range down to ``reg``.

    Parameters
    ----------
    C : (n, m) array_like
        Cost matrix, finite.
    a, b : (n,), (m,) array_like, optional
        Non-negative weights (uniform when omitted), of equal mass unless ``reg_m`` is finite.
    reg : float
        Entropic strength :math:`\varepsilon > 0`, in cost units.
    tol : float, default 1e-9
        Stop when the L1 marginal error (of the rows; the columns are then exact) is <= tol
        times the mass of a (so tol is relative, whatever the mass); 0 runs all ``max_iter``
        iterations. Unbalanced: the rows' first-order condition (the columns' is met at the
        fixed point). A run whose error stalls at the float64 precision floor (about
        ``1e-14 max|C| / reg`` times the mass) stops there with status ``max_iter`` and a message.
    max_iter : int, default 10000
        Iterations (one f and one g update each), annealing levels included; in the Newton
        phase at the target reg (balanced, after 30 plain iterations there: see
        ``docs/entropic.md``) a conjugate-gradient iteration or a trial point counts as one.
    eps_scaling : bool, default True
        Anneal reg geometrically (factor 1/2 per iteration) from ``max(C) - min(C)`` when reg is
        below 1/256 of that spread (above, plain iterations need no more). Balanced problems
        whose exact solution is cheap (uniform weights on n = m <= 1000 points, or up to 512^2
        pairs at reg <= 2e-4 x the spread) start there instead from the potentials of the exact
        solution (:func:`otsolve.exact`, the limit reg -> 0). False: plain iterations from zero.
    reg_m : float, optional
        Marginal relaxation :math:`\rho`; None or inf gives balanced OT.

    Returns
    -------
    OTResult
        ``value`` the objective above, ``value_linear`` = <C, P>, ``plan`` dense, ``f``, ``g`` in
        cost units (balanced: shifted so that a.f == b.g), ``dual_value``
        (a.f + b.g - reg (sum P - sum a sum b) when balanced), ``duality_gap``,
        ``max_dual_violation`` = max(f_i + g_j - C_ij, 0), ``n_iter``, ``marginal_error``
        (unbalanced: L1 distance of P 1 to a exp(-f/reg_m), and of P^T 1 to b exp(-g/reg_m)),
        ``status`` OPTIMAL, MAX_ITER (with a ConvergenceWarning and a message saying where it
        stopped) or NUMERICAL_ERROR (the evaluated plan contradicts the iterates: reg too small
        for float64 at these costs).

    Raises
    ------
    ValueError, TypeError
        On invalid input, as :func:`otsolve.exact`, for reg <= 0, NaN or inf, and for reg
        below 1e-12 times the spread of the costs (use :func:`otsolve.exact`).

    References
    ----------
    Cuturi (2013); Schmitzer (2019), Stabilized sparse scaling algorithms; Feydy et al. (2019);
    Brauer, Clason, Lorenz, Wirth (2017), A Sinkhorn-Newton method for entropic OT;
    Chizat, Peyre, Schmitzer, Vialard (2018), Scaling algorithms for unbalanced OT.

    Examples
    --------
    >>> import numpy as np, otsolve
    >>> res = otsolve.sinkhorn(np.array([[0.0, 1.0], [1.0, 0.0]]), reg=0.1)
    >>> res.status == "converged", bool(np.allclose(res.plan.sum(axis=1), 0.5))
    (True, True)
    """
    reg, tol, max_iter, eps_scaling, reg_m = _check_options(reg, tol, max_iter, eps_scaling, reg_m)
    C, a, b = check_problem(C, a, b, balanced=math.isinf(reg_m), copy=False)  # C is only read
    check_entropic_masses(a, b)
    cost = MatrixCost(C, shift=math.isinf(reg_m))
    _check_scale(reg, cost)
    # OT(a, a) on a symmetric cost (the debiasing terms of a divergence): alternating updates
    # crawl there (e.g. 1835 iterations against 137 for OT(a, b)); the averaged one does not.
    symmetric = math.isinf(reg_m) and np.array_equal(a, b) and is_symmetric(C)
    with threads_for(C.size):
        run = _solve(cost, a, b, reg, reg_m, tol, max_iter, eps_scaling, symmetric)
        return _result(cost, a, b, run, reg, reg_m, tol, max_iter, want_plan=True)


def _point_problem(x, y, a, b, p, metric, balanced):
    x, y = check_point_clouds(x, y)
    code, p = cost_code(metric, p)
    raw = (a, b)
    a = check_weights(a, x.shape[0], "a", dim_name=f"points in x, x.shape == {x.shape}")
    b = check_weights(b, y.shape[0], "b", dim_name=f"points in y, y.shape == {y.shape}")
    if balanced:
        b = check_balanced(a, b, raw)
    check_entropic_masses(a, b)
    check_cost_range(x, y, code, p, metric)
    return PointCost(x, y, code, p, shift=balanced), a, b


def sinkhorn_points(x, y, a=None, b=None, *, reg, p=2, metric="euclidean", tol=1e-9,
                    max_iter=DEFAULT_MAX_ITER, eps_scaling=True, reg_m=None,
                    return_plan=False, truncate=None) -> OTResult:
    r"""Solve entropic OT between two point clouds without storing the cost matrix.

    The problem, updates and result are those of :func:`sinkhorn` for
    :math:`C_{ij} = \mathrm{metric}(x_i, y_j)^p`, but every pass recomputes the costs from the
    points, so memory is O(n + m) (n = m = 100,000 in 2-D needs a few MiB). Small problems (at
    most 2**22 pairs: 64 MiB) are faster with the matrix: their costs are computed once and
    solved as :func:`sinkhorn` does, with the kept Gibbs kernel.

    Parameters
    ----------
    x, y : (n, d), (m, d) array_like
        Point clouds (1-D arrays are points on the line).
    a, b, reg, tol, max_iter, eps_scaling, reg_m
        As in :func:`sinkhorn`; annealing starts from the diameter of the clouds to the power p.
    p : float, default 2
    metric : {"euclidean", "sqeuclidean", "cityblock"}
    return_plan : bool, default False
        Materialise the dense (n, m) plan (memory O(n m)); otherwise ``plan`` is None and
        ``f``, ``g`` rebuild any entry: P_ij = a_i b_j exp((f_i + g_j - C_ij) / reg).
    truncate : bool, optional
        Kernel truncation (Schmitzer 2019) with a coarse-to-fine warm start: each pass computes
        only the pairs whose term can exceed ``1e-4 * tol`` of its row's sum, found by k-d cells
        of the clouds from the current potentials, and bounds the rest; the run starts from the
        clouds clustered into 2048 cells each. None (default): on for balanced problems of at
        least 8192^2 pairs, in at most 3 dimensions, with reg <= 0.01 x the cost bound (there a
        pass over n = m = 100,000 planar points computes ~10% of the pairs). ``marginal_error``
        then includes the certified bound of the mass the skipped pairs hold, and the message
        states it; ``value`` and ``max_dual_violation`` are those of the kept pairs (the plan is 0
        on the others). Balanced problems only.

    Returns
    -------
    OTResult
        As :func:`sinkhorn`.

    Examples
    --------
    >>> import otsolve
    >>> res = otsolve.sinkhorn_points([[0.0], [1.0]], [[0.0], [1.0]], reg=0.01)
    >>> round(res.value_linear, 6), res.plan is None
    (0.0, True)
    """
    reg, tol, max_iter, eps_scaling, reg_m = _check_options(reg, tol, max_iter, eps_scaling, reg_m)
    cost, a, b = _point_problem(x, y, a, b, p, metric, balanced=math.isinf(reg_m))
    _check_scale(reg, cost)
    truncate = _truncated.use_truncation(truncate, cost, reg, math.isinf(reg_m))
    # OT(a, a) between a cloud and itself: the averaged updates, as sinkhorn() on a symmetric C
    symmetric = math.isinf(reg_m) and np.array_equal(a, b) and np.array_equal(cost.x, cost.y)
    with threads_for(cost.shape[0] * cost.shape[1]):
        if truncate:
            truncated, run = _truncated_run(cost, a, b, reg, tol, max_iter, eps_scaling)
            cost = cost if return_plan else truncated  # a dense plan is evaluated on all pairs
        else:
            run = _solve(cost, a, b, reg, reg_m, tol, max_iter, eps_scaling, symmetric)
        return _result(cost, a, b, run, reg, reg_m, tol, max_iter, want_plan=bool(return_plan))


def _truncated_run(full, a, b, reg, tol, max_iter, eps_scaling):
    """Sinkhorn with kernel truncation on the clouds of ``full`` (a PointCost), warm-started from
    a cascade of clusterings (COARSE_CLUSTERS cells each, solved on all their pairs and annealed
    as asked; then LEVEL_RATIO times more, truncated, at the target reg): each level's potentials,
    softened onto the next level's points, leave it only the local errors that plain steps remove
    fast. Returns the truncated cost of the clouds and the run (all levels' iterations counted)."""
    code, p, theta = full.code, full.p, _truncated.theta_for(tol)
    levels = list(zip(_truncated.cascade(full.x, a), _truncated.cascade(full.y, b)))
    (xc, ac, _), (yc, bc, _) = levels[0]
    coarse = PointCost(xc, yc, code, p, shift=True)
    run = _iterate(coarse, ac, bc, reg, math.inf, tol, max_iter, eps_scaling)
    f, g, n_iter = run.f + coarse.offset, run.g, run.n_iter  # potentials of C (balanced: the offset moves f)
    omega = run.omega  # the slowest mode's contraction is the clouds', read off the coarse solve
    # (a level starts with HINT_AFTER plain steps all the same: see there)
    for ((xc, ac, _), (yc, bc, _)), ((x, a_l, up_x), (y, b_l, up_y)) in zip(levels, levels[1:]):
        f_next = _truncated.parent_guess(f, up_x)  # guesses of the soft-mins below (NaN: none)
        g_next = _truncated.parent_guess(g, up_y)
        _softmin(_truncated.TruncatedPointCost(x, yc, code, p, theta), 0, g, _log(bc), reg, f_next)
        _softmin(_truncated.TruncatedPointCost(y, xc, code, p, theta), 0, f, _log(ac), reg, g_next)
        cost = _truncated.TruncatedPointCost(x, y, code, p, theta)
        run = _iterate(cost, a_l, b_l, reg, math.inf, _truncated.ITERATE_TOL * tol, max_iter - n_iter, False,
                       init=(f_next, g_next), hint=omega)
        omega = max(omega, run.omega)
        f, g, n_iter = run.f, run.g, n_iter + run.n_iter
    return cost, run._replace(n_iter=n_iter)

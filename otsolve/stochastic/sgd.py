"""Semi-dual stochastic optimal transport between discrete measures (Genevay et al. 2016)."""
from __future__ import annotations

import math
import warnings

import numba
import numpy as np

from .._result import ConvergenceWarning, OTResult, Status
from .._threads import MeasuredThreads
from .._validation import check_choice, check_count, check_entropic_masses, check_positive, check_problem
from . import _kernels

METHODS = ("sag", "asgd")
NO_LINEAR = np.empty(0)  # evaluate: <C, P> per row not wanted
DEFAULT_BATCH = 64     # SAG rows per step: enough work per parallel region to hide its start-up cost
ASGD_BATCH = 8         # ASGD: its steps shrink as 1/sqrt(k), so more, smaller steps per pass go
                       # further: 2-3x fewer passes to 1e-3 than with 64 (n = 1000, reg 1e-2 and 1e-1)
SAG_STEP = 4.0         # SAG step per sample in units of reg; POT uses 1 (1/L, L = 1/reg); 4 was ~2x
                       # faster and still stable on 2-D Gaussian clouds at reg 1e-1 .. 1e-3
FULL_STEP = 0.5        # cap of the SAG step in units of reg / max(b)
MAX_EPOCHS = 2000      # default budget when n_iter is None: this many passes over n samples
LEVEL_START = 0.1      # reg = 0 with SAG: first smoothing level, relative to the cost spread,
LEVEL_FACTOR = 3.0     # divided by this at each level,
LEVEL_MARGINAL = 1e-2  # which ends when the marginal error (relative to the mass) is below this,
LEVEL_EPOCHS = 100     # or after this many passes over the data
ASGD_STEP = 0.5        # ASGD step constant in units of spread(C) sqrt(m), see asgd_step,
ASGD_STEP_REG = 1.4    # or in units of reg / max(b) if larger: best within 2x for batches 4 to 64
STALL_FACTOR = 0.5     # ASGD: at its O(1/sqrt k) rate the error left is ~2.4x the change of the value
                       # over the last half of the run; stop when that change < 0.5 tol |value|
VALUE_FLOOR = 1e-9     # tolerances are relative to max(value - min(C) mass, VALUE_FLOOR spread(C) mass):
                       # the value of C - min(C), so that an offset of C changes nothing
REG_RESOLUTION = 1e-12  # a reg > 0 below this times spread(C) is solved as reg = 0: its steps
                        # (proportional to reg) could not move g, and softmax is argmax to rounding
FLOAT_HEADROOM = 1e300  # costs or reg above this are refused: steps and potentials could overflow
REG_MAX = 1e10          # a reg above this times spread(C) is refused: the soft c-transform
                        # -reg log sum_j b_j exp((g_j - C_ij) / reg) keeps spread / reg of its digits
CONVERGED, BUDGET, STALLED = "converged", "budget", "stalled"  # why a run stopped


def semidual_sgd(C, a=None, b=None, *, reg=0.0, method="sag", n_iter=None, max_iter=None,
                 batch_size=None, lr=None, seed=None, tol=1e-3, check_every=None,
                 return_plan=False, progress=False) -> OTResult:
    r"""Solve the semi-dual of (entropic) optimal transport by stochastic gradient ascent.

    .. math::
        W_\varepsilon = \max_g \sum_i a_i\, g^{c,\varepsilon}(x_i) + \sum_j b_j g_j, \quad
        g^{c,\varepsilon}(x_i) = -\varepsilon \log \sum_j b_j e^{(g_j - C_{ij})/\varepsilon}

    (the c-transform :math:`\min_j C_{ij} - g_j` when :math:`\varepsilon = 0`). A step samples
    ``batch_size`` rows i with probability :math:`a_i` and uses the gradient
    :math:`b - \mathrm{softmax}_j(\log b_j + (g_j - C_{ij})/\varepsilon)` (for
    :math:`\varepsilon = 0`, b minus the indicator of the argmin), rows in parallel.

    Parameters
    ----------
    C : (n, m) array_like
        Cost matrix.
    a, b : (n,), (m,) array_like, optional
        Weights of equal mass (uniform when omitted).
    reg : float, default 0
        Entropic strength epsilon >= 0, in cost units.
    method : {"sag", "asgd"}
        ``"sag"``: stochastic average gradient (one stored gradient per row, constant step
        ``lr``, default ``4 reg batch_size``, at most ``reg / (2 max b)``; the step uses the
        average of the gradients stored so far). With ``reg = 0`` SAG runs on smoothed problems
        reg = 0.1 spread(C), divided by 3 at each level, and keeps the g with the best exact
        (reg = 0) value. ``"asgd"``: averaged SGD, step ``lr / sqrt(k)`` (default the larger of
        ``1.4 reg / max(b)``, 1.4 times POT's choice, and ``0.5 spread(C) sqrt(m)``), rows drawn
        by passes (each row once per pass for uniform ``a``, see ``_Problem.sample_passes``); the
        result is the average of the iterates.
    n_iter, max_iter : int, optional
        Budget of steps (synonyms). Default: 2000 passes over the n rows.
    batch_size : int, optional
        Rows per step: 64 for SAG (computed in parallel), 8 for ASGD (whose steps shrink as
        1/sqrt(k): more, smaller steps go further per pass).
    lr : float, optional
        Step size (see ``method``).
    seed : int or numpy.random.Generator, optional
    tol : float, default 1e-3
        Stopping rule, checked every ``check_every`` steps (default: one pass, ``n / batch_size``)
        from the exact objective over all rows: ``reg > 0``: the certified relative duality gap
        (upper bound from the rounded implied plan, Altschuler et al. 2017) is below ``tol``;
        ASGD also tries the certificate when the value changed by less than ``tol / 2`` over the
        last half of the run (any reg), SAG with ``reg = 0`` when the exact value gained less
        than ``tol`` over one smoothing level. Such a stall only triggers the certificate: the
        status is ``optimal`` only if the certified gap is below ``tol``. ``tol=0`` runs the
        whole budget.
    return_plan : bool, default False
        Return the dense plan implied by g (the argmin assignment when ``reg = 0``).
    progress : bool, default False
        Show a tqdm progress bar.

    Returns
    -------
    OTResult
        ``g`` (m,), ``f`` (n,) its c-transform, ``value`` the semi-dual objective at g (a lower
        bound of the entropic, or for reg = 0 the exact, optimal cost), ``value_linear`` =
        <C, P> of the implied plan P, ``marginal_error`` of P, ``duality_gap`` (certified upper
        bound minus ``value``), ``trace`` (the objective at every check), ``status``.
        ``value_linear``, ``max_dual_violation`` and ``duality_gap`` (about two passes over C
        unless the run certified its last g) are computed when first read.

    Raises
    ------
    ValueError, TypeError
        On invalid input (as :func:`otsolve.exact`), for reg above 1e10 times the spread of the
        costs (the semi-dual has no digits left there; use :func:`otsolve.sinkhorn`), and for
        costs or reg above 1e300 (the potentials could overflow).

    References
    ----------
    Genevay, Cuturi, Peyre, Bach (2016), Stochastic optimization for large-scale optimal transport.

    Examples
    --------
    >>> import numpy as np, otsolve
    >>> C = np.array([[0.0, 1.0], [1.0, 0.0]])
    >>> res = otsolve.semidual_sgd(C, reg=0.1, seed=0)
    >>> str(res.status), bool(res.duality_gap <= 1e-3 * res.value)
    ('optimal', True)
    """
    C, a, b = check_problem(C, a, b)
    reg = check_positive(reg, "reg", allow_zero=True)
    check_choice(method, "method", METHODS)
    if batch_size is None:
        batch_size = ASGD_BATCH if method == "asgd" else DEFAULT_BATCH
    batch_size = check_count(batch_size, "batch_size")
    lr = None if lr is None else check_positive(lr, "lr")
    tol = check_positive(tol, "tol", allow_zero=True)
    if reg > 0:
        check_entropic_masses(a, b)
    prob = _Problem(C, a, b, batch_size, seed)
    check_reg_range(reg, prob.spread)
    if 0 < reg < REG_RESOLUTION * prob.spread:
        prob.note = (f"; reg={reg:.3g} is below {REG_RESOLUTION:g} x the cost spread {prob.spread:.3g}: "
                     "solved as reg = 0")
        reg = 0.0
    budget = _budget(n_iter, max_iter, MAX_EPOCHS * prob.epoch)
    check_every = prob.epoch if check_every is None else check_count(check_every, "check_every")
    run = _run_asgd if method == "asgd" else (_run_sag if reg > 0 else _run_sag_levels)
    with _progress_bar(budget, progress) as bar:
        g, steps, trace, stop = run(prob, reg, lr, tol, budget, check_every, bar)
    return _result(prob, g, reg, steps, trace, stop, budget, return_plan)


class _Problem:
    """Validated data of a discrete problem with its sampler and exact evaluations."""

    def __init__(self, C, a, b, batch_size, seed):
        self.C, self.a, self.b = C, a, b
        self.n, self.m = C.shape
        self.mass = float(a.sum())
        self.w, self.b1 = a / self.mass, b / self.mass  # the unit-mass problem has the same g
        with np.errstate(divide="ignore"):
            self.log_b = np.log(b)
        self.cdf = np.cumsum(self.w)
        self.batch = batch_size
        self.epoch = max(1, math.ceil(self.n / batch_size))
        self.rng = np.random.default_rng(seed)
        self.pending = np.empty(0, dtype=np.intp)  # drawn by sample_passes, not yet used
        lo, hi = float(C.min()), float(C.max())
        # an offset larger than the spread is taken out of C (a copy already): values and the
        # certified gap then keep the digits of the differences; results are shifted back
        self.shift = lo if abs(lo) > hi - lo else 0.0
        if self.shift:
            C -= self.shift
        self.offset = lo - self.shift  # min of the C solved on
        self.spread = (hi - lo) or 1.0
        self.chunks = 4 * numba.get_num_threads()
        self.buf = np.empty((batch_size, self.m))
        self.threads = MeasuredThreads(batch_size * self.m)
        self.tries, self.next_try = 0, 0
        self.note = ""  # appended to the result's message
        self.last = None, None   # (g, evaluation) of the latest check
        self.bound = None, None  # (g, upper_bound) of the latest certificate tried

    def sample(self, steps):
        """Row indices (steps, batch) drawn with probability a_i, independently."""
        u = self.rng.random((steps, self.batch)) * self.cdf[-1]
        return np.minimum(np.searchsorted(self.cdf, u, side="right"), self.n - 1)

    def sample_passes(self, steps):
        """Row indices (steps, batch) with probability a_i, n per pass, stratified: the k-th
        draw of a pass falls in the k-th n-quantile of a, k in random order (with uniform
        weights: each row once per pass, random reshuffling, which ASGD converges faster with;
        SAG does not)."""
        need = steps * self.batch
        while len(self.pending) < need:
            u = (self.rng.permutation(self.n) + self.rng.random(self.n)) * (self.cdf[-1] / self.n)
            self.pending = np.concatenate([self.pending, np.searchsorted(self.cdf, u, side="right")])
        idx, self.pending = self.pending[:need], self.pending[need:]
        return np.minimum(idx, self.n - 1).reshape(steps, self.batch)

    def evaluate(self, g, reg):
        """Exact semi-dual value, the c-transform f and the column sums of the implied plan."""
        f, colsum = np.empty(self.n), np.empty((self.chunks, self.m))
        with self.threads.using():
            _kernels.evaluate(self.C, self.n, self.a, g, self.log_b, reg, f, colsum, NO_LINEAR)
        return float(self.a @ f + self.b @ g) + mass_term(reg, self.mass), f, colsum.sum(axis=0)

    def upper_bound(self, g, reg, f, col):
        """Objective of the implied plan rounded onto the transport polytope (Altschuler,
        Weed & Rigollet 2017), an upper bound of the optimum; <C, P> of the implied plan;
        max_ij f_i + g_j - C_ij; and <C, Q> of the rounded plan Q, an upper bound of the exact
        (reg = 0) optimum for any reg. One pass over all entries, then one over the columns
        that lack mass (about half) for the rows that lack mass."""
        scale = np.ones(self.m)
        np.divide(self.b, col, out=scale, where=col > self.b)
        log_scale = np.log(scale)
        rows, closed, linear, worst, rounded = (np.empty(self.n) for _ in range(5))
        with self.threads.using():
            _kernels.rounding_rows(self.C, self.a, f, g, self.log_b, reg, scale, log_scale, rows, closed,
                                   linear, worst, rounded)
        upper, lp_upper = float(closed.sum()) + mass_term(reg, self.mass), float(rounded.sum())
        err_a, err_b = np.maximum(self.a - rows, 0.0), np.maximum(self.b - col * scale, 0.0)
        total, cols = err_a.sum(), np.flatnonzero(err_b > 0.0)
        if total > 0 and len(cols):
            out, out_linear = np.empty(self.n), np.empty(self.n)
            with self.threads.using():
                _kernels.rounding_fix(self.C, self.a, self.b, f, g, self.log_b, reg, scale, log_scale,
                                      err_a / total, err_b, cols, out, out_linear)
            upper += float(out.sum())
            lp_upper += float(out_linear.sum())
        return upper, float(linear.sum()), float(worst.max()), lp_upper

    def denominator(self, value):
        return max(abs(value - self.offset * self.mass), VALUE_FLOOR * self.spread * self.mass)

    def sag_step(self, reg):
        """SAG_STEP reg per sample of a batch, at most half the inverse curvature of the
        objective near its optimum, reg / max(b) (a batch as large as n is a full-gradient step)."""
        return reg * min(SAG_STEP * min(self.batch, self.n), FULL_STEP / self.b1.max())

    def certified(self, g, reg, trace, f, col, tol):
        """The certified gap is below tol; tried only once the value moves by less than tol
        between checks (a cheap sign, saving the two passes of the rounding), backing off on failure."""
        value, bound = trace[-1], tol * self.denominator(trace[-1])
        if len(trace) < max(2, self.next_try) or abs(value - trace[-2]) > bound:
            return False
        return self.certify(g, reg, value, f, col, tol, len(trace))

    def certify(self, g, reg, value, f, col, tol, checks, upper=math.inf):
        """Whether the certified gap (rounded plan) at g is below tol, given also an ``upper``
        bound of the optimum found otherwise; on failure the k-th failed try makes the next one
        wait k checks (``next_try``)."""
        bound = self.upper_bound(g, reg, f, col)
        self.bound = g.copy(), (min(bound[0], upper), *bound[1:3])
        if self.bound[1][0] - value <= tol * self.denominator(value):
            return True
        self.tries += 1
        self.next_try = checks + self.tries
        return False


def _run_sag(prob, reg, lr, tol, budget, check_every, bar):
    """SAG with a constant step (Genevay et al. 2016, alg. 1) on mini-batches."""
    lr = prob.sag_step(reg) if lr is None else lr
    g, d, seen = np.zeros(prob.m), np.zeros(prob.m), np.zeros(prob.n + 1)
    memory = np.zeros((prob.n, prob.m))
    steps, trace = 0, []
    while steps < budget:
        k = min(check_every, budget - steps)
        idx = prob.sample(k)
        prob.threads.run(lambda lo, hi: _kernels.sag_steps(prob.C, prob.w, g, prob.log_b, prob.b1, reg,
                                                           lr, idx[lo:hi], memory, d, seen, prob.buf), k)
        steps += k
        bar.update(k)
        value, f, col = prob.evaluate(g, reg)
        trace.append(value)
        prob.last = g.copy(), (value, f, col)
        if not math.isfinite(value) or prob.certified(g, reg, trace, f, col, tol):
            return g, steps, trace, CONVERGED if math.isfinite(value) else BUDGET
    return g, steps, trace, BUDGET


def _run_sag_levels(prob, reg, lr, tol, budget, check_every, bar):
    """reg = 0: SAG on smoothed problems of decreasing reg, warm-started; the exact (reg = 0)
    value of each check goes to the trace, and the best g is kept."""
    level = LEVEL_START * prob.spread
    step = None if lr is None else lr / level  # a given lr applies to the first level, scaled
    g, best_g, best = np.zeros(prob.m), np.zeros(prob.m), -np.inf
    steps, trace, level_start = 0, [], -np.inf
    while steps < budget:
        lr_level = prob.sag_step(level) if step is None else step * level
        d, memory, seen = np.zeros(prob.m), np.zeros((prob.n, prob.m)), np.zeros(prob.n + 1)
        for _ in range(max(1, LEVEL_EPOCHS * prob.epoch // check_every)):
            k = min(check_every, budget - steps)
            if k <= 0:
                break
            idx = prob.sample(k)
            prob.threads.run(lambda lo, hi: _kernels.sag_steps(prob.C, prob.w, g, prob.log_b, prob.b1,
                                                               level, lr_level, idx[lo:hi], memory, d,
                                                               seen, prob.buf), k)
            steps += k
            bar.update(k)
            value, _, _ = prob.evaluate(g, 0.0)
            trace.append(value)
            if value > best:
                best, best_g = value, g.copy()
            _, f, col = prob.evaluate(g, level)
            if np.abs(col - prob.b).sum() <= LEVEL_MARGINAL * prob.mass:
                break
        if tol > 0 and best - level_start <= tol * prob.denominator(best):  # a stall: stop, certify
            # with the rounded plan of this level as a second upper bound of the LP (<C, Q>
            # of any feasible Q is one), often tighter than the rounded argmin assignment
            upper = prob.upper_bound(g, level, f, col)[3]
            f, col = prob.evaluate(best_g, 0.0)[1:]
            prob.last = best_g.copy(), (best, f, col)
            ok = prob.certify(best_g, 0.0, best, f, col, tol, len(trace), upper)
            return best_g, steps, trace, CONVERGED if ok else STALLED
        level_start, level = best, level / LEVEL_FACTOR
    return best_g, steps, trace, BUDGET


def _run_asgd(prob, reg, lr, tol, budget, check_every, bar):
    """Averaged SGD with step lr / sqrt(k) (Genevay et al. 2016, alg. 2) on mini-batches."""
    lr = max(ASGD_STEP_REG * reg / prob.b1.max(), asgd_step(prob.spread, prob.m)) if lr is None else lr
    g, g_avg = np.zeros(prob.m), np.zeros(prob.m)
    steps, trace = 0, []
    while steps < budget:
        k = min(check_every, budget - steps)
        idx = prob.sample_passes(k)
        prob.threads.run(lambda lo, hi: _kernels.asgd_steps(prob.C, g, g_avg, prob.log_b, prob.b1, reg, lr,
                                                            steps + lo, idx[lo:hi], prob.buf), k)
        steps += k
        bar.update(k)
        value, f, col = prob.evaluate(g_avg, reg)
        trace.append(value)
        prob.last = g_avg.copy(), (value, f, col)
        if not math.isfinite(value):
            return g_avg, steps, trace, BUDGET
        if _stalled(trace, tol, prob.denominator(value)):  # stop; optimal only if certified
            ok = prob.certify(g_avg, reg, value, f, col, tol, len(trace))
            return g_avg, steps, trace, CONVERGED if ok else STALLED
        if reg > 0 and prob.certified(g_avg, reg, trace, f, col, tol):
            return g_avg, steps, trace, CONVERGED
    return g_avg, steps, trace, BUDGET


def check_reg_range(reg, spread):
    if not (reg <= FLOAT_HEADROOM and spread <= FLOAT_HEADROOM):  # (or NaN)
        raise ValueError(f"costs (spread {spread:.3g}) or reg={reg:.3g} within 1e8 of float64's largest "
                         "number: the potentials could overflow; rescale C and reg by one factor")
    if reg > REG_MAX * spread:
        raise ValueError(f"reg={reg:.3g} is above {REG_MAX:g} x the cost spread {spread:.3g}: the semi-dual "
                         "loses its digits there (the plan is a b^T to ~1e-10); use otsolve.sinkhorn")


def mass_term(reg, mass):
    """reg (M^2 - M): the entropic objective's KL(P | a b^T) has the terms -sum P + sum a b^T =
    -M + M^2 at mass M, which the semi-dual a.f + b.g lacks (zero at unit mass only)."""
    return reg * (mass * mass - mass)


def asgd_step(spread, m):
    """Default ASGD step constant: potentials move on the scale of the cost spread while a
    gradient coordinate is O(1/m); measured best within 2x at m = 3 (semi-discrete, 1-D) and
    m = 1000 (2-D clouds)."""
    return ASGD_STEP * spread * math.sqrt(m)


def _stalled(trace, tol, denominator, min_checks=4):
    """The value changed by less than STALL_FACTOR * tol over the last half of the checks."""
    t = len(trace)
    return tol > 0 and t >= min_checks and abs(trace[-1] - trace[t // 2 - 1]) <= STALL_FACTOR * tol * denominator


def _result(prob, g, reg, steps, trace, stop, budget, return_plan):
    known, evaluation = prob.last
    same = known is not None and np.array_equal(known, g)  # the runner's last check, at this g
    value, f, col = evaluation if same else prob.evaluate(g, reg)
    dead = prob.b == 0
    if dead.any():  # potentials SGD never moves: the tightest feasible ones, as the exact solver
        g = g.copy()
        g[dead] = (prob.C[:, dead] - f[:, None]).min(axis=0)
    plan = None
    if return_plan:
        plan = np.empty((prob.n, prob.m))
        with prob.threads.using():
            _kernels.implied_plan(prob.C, prob.a, g, prob.log_b, reg, plan)
    finite = math.isfinite(value) and bool(np.isfinite(g).all())
    gap = prob.bound[1][0] - value if stop == STALLED else None
    status, message = run_status(stop, finite, budget, gap, prob.denominator(value), prob.note)
    shift = prob.shift * prob.mass  # back to the costs given (f absorbs the offset)
    res = _Result(value=value + shift, value_linear=math.nan, plan=plan, f=f + prob.shift, g=g,
                  status=status, n_iter=steps, marginal_error=float(np.abs(col - prob.b).sum()),
                  dual_value=value + shift, message=message, trace=np.asarray(trace, float) + shift)
    object.__setattr__(res, "_solved", (value, shift))  # the value on C - shift: the gap from it
    known, bound = prob.bound
    if same and known is not None and np.array_equal(known, g):  # certified at this g by the run
        res._set_certificate(*bound)
    else:  # copies: the caller may change res.f, res.g before reading the certificate
        f_, g_, col_ = f.copy(), g.copy(), col.copy()
        object.__setattr__(res, "_pending", lambda: prob.upper_bound(g_, reg, f_, col_))
    return res


class _Result(OTResult):
    """OTResult whose certificate (value_linear, max_dual_violation, duality_gap) is computed on
    first access, with the same values: rounding the implied plan costs about two passes over C,
    more than the SGD itself on a short run, and a caller may only want g and the value."""

    CERTIFICATE = ("value_linear", "max_dual_violation", "duality_gap")

    def __getattribute__(self, name):
        if name in _Result.CERTIFICATE:
            pending = object.__getattribute__(self, "__dict__").get("_pending")
            if pending is not None:
                self._set_certificate(*pending())
        return object.__getattribute__(self, name)

    def _set_certificate(self, upper, linear, worst, *_):
        value, shift = self.__dict__["_solved"]
        for name, v in zip(_Result.CERTIFICATE, (linear + shift, max(worst, 0.0), upper - value)):
            object.__setattr__(self, name, v)
        self.__dict__.pop("_pending", None)

    def __getstate__(self):  # pickle and copy: computed, without the closure
        self.duality_gap
        return dict(self.__dict__)


def _budget(n_iter, max_iter, default):
    if n_iter is not None and max_iter is not None and n_iter != max_iter:
        raise ValueError(f"n_iter={n_iter!r} and max_iter={max_iter!r} are synonyms; pass one")
    if n_iter is not None:
        return check_count(n_iter, "n_iter")
    if max_iter is not None:
        return check_count(max_iter, "max_iter")
    return default


def _progress_bar(total, show):
    from tqdm.auto import tqdm
    return tqdm(total=total, disable=not show, unit="step", desc="semi-dual SGD", leave=False)


def run_status(stop, finite, budget, gap=None, denominator=1.0, note=""):
    """Status and message of a stochastic run stopped for reason ``stop`` (CONVERGED, BUDGET
    or STALLED, with the certified ``gap``, if any); warns unless it converged."""
    if stop == CONVERGED and finite:
        return Status.OPTIMAL, "converged" + note
    if not finite:
        status, message = Status.NUMERICAL_ERROR, "non-finite potentials; try a smaller lr"
    elif stop == STALLED:
        status = Status.MAX_ITER
        certified = "" if gap is None else f", but its certified relative gap {gap / denominator:.3g} is above tol"
        message = (f"stopped by the stall rule (the objective stopped improving by tol){certified}; "
                   "the result is a lower bound, not certified optimal: lower tol or raise n_iter")
    else:
        status = Status.MAX_ITER
        message = (f"stopped after n_iter={budget} steps before the stopping rule (tol) was met; "
                   "raise n_iter or tol")
    message += note
    warnings.warn(message, ConvergenceWarning, stacklevel=4)
    return status, message

"""Certified reference values and the evaluators that put every solver's output on one scale.

The harness checks certificates itself, from the plan and potentials a solver returns, with its
own passes over the costs (scipy's ``cdist``), so a reference does not rest on the solver's word:

- exact OT: ``(f, g)`` is made dual feasible by ``g_j = min_i C_ij - f_i``, giving the lower bound
  ``a.f + b.g``; a plan with marginals within MARGINAL_TOL gives the upper bound ``<C, P>``.
- entropic OT (``<C, P> + reg KL(P | a b^T)``, KL with ``- P + Q``): any ``(f, g)`` gives the lower
  bound ``a.f + b.g - reg sum_ij a_i b_j (exp((f_i + g_j - C_ij) / reg) - 1)``.
A reference is certified when its upper and lower bounds agree to CERT_RTOL of the value.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.special import logsumexp

MARGINAL_TOL = 1e-9     # L1 marginal error of a plan accepted as feasible (float64 sums of n m terms)
CERT_RTOL = {"exact": 1e-9, "entropic": 1e-7}  # certified: upper - lower bound below this x |value|;
                        # entropic: Sinkhorn at tol 1e-11 gets to ~1e-9, short of exact's rounding level
REFERENCE_TOL = 1e-11   # marginal tolerance of the Sinkhorn run behind the entropic reference
REFERENCE_MAX_ITER = 100_000


@dataclass(frozen=True)
class Reference:
    """The best certified value of a problem: ``value`` with bounds ``lower <= optimum <= upper``."""

    value: float
    lower: float
    upper: float
    certified: bool
    how: str


def exact_lower_bound(problem, f) -> float:
    """a.f + b.g for g_j = min_i C_ij - f_i: a lower bound of exact OT for any f (weak duality)."""
    f = np.asarray(f, float)
    g = np.full(problem.m, np.inf)
    for rows, block in problem.cost_rows():
        g = np.minimum(g, (block - f[rows, None]).min(axis=0))
    return float(problem.a @ f + problem.b @ g)


def plan_cost(problem, plan) -> tuple[float, float]:
    """(<C, P>, L1 marginal error) of a dense or scipy.sparse plan."""
    if hasattr(plan, "tocoo"):
        coo = plan.tocoo()
        i, j, mass = coo.row, coo.col, coo.data
        costs = problem.C[i, j] if problem.dense_ok else pair_costs(problem, i, j)
        rows = np.bincount(i, mass, minlength=problem.n)
        cols = np.bincount(j, mass, minlength=problem.m)
        value = float(mass @ costs)
    else:
        plan = np.asarray(plan, float)
        rows, cols, value = plan.sum(axis=1), plan.sum(axis=0), float((plan * problem.C).sum())
    error = max(np.abs(rows - problem.a).sum(), np.abs(cols - problem.b).sum())
    return value, float(error)


def pair_costs(problem, i, j) -> np.ndarray:
    """C_ij for the index arrays i, j, from the coordinates."""
    sq = ((problem.x[i] - problem.y[j]) ** 2).sum(axis=1)
    return sq if problem.metric == "sqeuclidean" else np.sqrt(sq)


def entropic_lower_bound(problem, f, g, reg) -> float:
    """The entropic dual at any (f, g): a lower bound of <C, P> + reg KL(P | a b^T)."""
    f, g = np.asarray(f, float), np.asarray(g, float)
    total = 0.0
    with np.errstate(over="ignore", invalid="ignore"):
        for rows, block in problem.cost_rows():
            total += problem.a[rows] @ (np.exp((f[rows, None] + g[None, :] - block) / reg) @ problem.b)
    mass = problem.a.sum() * problem.b.sum()
    value = float(problem.a @ f + problem.b @ g - reg * (total - mass))
    return value if math.isfinite(value) else -math.inf


def semidual_value(problem, g, reg) -> float:
    """The semi-dual objective a.g^{c,reg} + b.g at g: the entropic lower bound at its best f."""
    g = np.asarray(g, float)
    log_b = np.log(np.where(problem.b > 0, problem.b, 1.0)) + np.where(problem.b > 0, 0.0, -np.inf)
    f = np.empty(problem.n)
    for rows, block in problem.cost_rows():
        f[rows] = -reg * logsumexp(log_b[None, :] + (g[None, :] - block) / reg, axis=1)
    keep = problem.a > 0
    return float(problem.a[keep] @ f[keep] + problem.b @ g)


def entropic_primal(problem, plan, reg) -> float:
    """<C, P> + reg KL(P | a b^T) of a dense plan, KL(P|Q) = sum P log(P/Q) - P + Q."""
    P = np.asarray(plan, float)
    Q = problem.a[:, None] * problem.b[None, :]
    with np.errstate(divide="ignore", invalid="ignore"):
        kl_terms = np.where(P > 0, P * np.log(P / Q), 0.0)
    if not np.isfinite(kl_terms).all():
        return math.inf  # mass where a_i b_j = 0
    return float((P * problem.C).sum() + reg * (kl_terms.sum() - P.sum() + Q.sum()))


def exact_reference(problem) -> Reference:
    """otsolve's exact solver, its certificate rechecked here; HiGHS when that fails and n m is small."""
    from .. import exact
    from ..lp import exact_multiscale

    if problem.dense_ok:
        res, how = exact(problem.C, problem.a, problem.b), "otsolve.exact"
    else:  # the dense lazy simplex took over 15 minutes at 128 x 128 pixels, multiscale 2-5 s
        res = exact_multiscale(problem.x, problem.y, problem.a, problem.b, p=1, metric=problem.metric)
        how = "otsolve multiscale"
    upper, error = plan_cost(problem, res.plan)
    upper = upper if error <= MARGINAL_TOL else math.inf
    lower = exact_lower_bound(problem, res.f)
    if upper - lower <= CERT_RTOL["exact"] * max(abs(upper), 1e-300):
        return Reference(upper, lower, upper, True, f"{how}, certificate rechecked")
    if problem.pairs <= 2**16:
        from .solvers import highs_value
        value, status = highs_value(problem)
        if status == 0:
            return Reference(value, value, value, True, "HiGHS (otsolve.exact not certified)")
    return Reference(min(upper, res.value), lower, upper, False, f"{how}, certificate failed")


def entropic_reference(problem, reg=None) -> Reference:
    """otsolve's Sinkhorn at tol 1e-11, certified by the entropic lower bound computed here;
    at ``problem.reg`` unless ``reg`` is given."""
    from .. import sinkhorn, sinkhorn_points

    reg = problem.reg if reg is None else reg
    options = dict(reg=reg, tol=REFERENCE_TOL, max_iter=REFERENCE_MAX_ITER)
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the precision floor may stop it a little above tol
        if problem.dense_ok:
            res = sinkhorn(problem.C, problem.a, problem.b, **options)
        else:
            res = sinkhorn_points(problem.x, problem.y, problem.a, problem.b, p=1, metric=problem.metric,
                                  **options)
    lower = entropic_lower_bound(problem, res.f, res.g, reg)
    # the primal of the returned plan, recomputed here (sinkhorn_points keeps no plan: its own value)
    upper = entropic_primal(problem, res.plan, reg) if res.plan is not None else res.value
    # the plan's marginals are off by ~tol, so the bounds may cross by rounding: compare |upper - lower|
    certified = abs(upper - lower) <= CERT_RTOL["entropic"] * abs(upper)
    # the dual bound is rigorous at any (f, g); the primal of a plan ~tol off its marginals is not
    return Reference(lower, lower, upper, bool(certified), f"otsolve.sinkhorn tol={REFERENCE_TOL:g}, "
                     "its dual bound computed here")


def reference(problem, objective) -> Reference | None:
    """The certified reference of ``problem`` for ``objective``; None when it cannot be computed."""
    try:
        return exact_reference(problem) if objective == "exact" else entropic_reference(problem)
    except Exception as err:  # reported as "no certified value" on the runs, never a crash of the harness
        return Reference(math.nan, -math.inf, math.inf, False, f"no reference: {type(err).__name__}: {err}")

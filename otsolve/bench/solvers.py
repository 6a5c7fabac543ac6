"""The registry of benchmarked solvers: otsolve's and every installed peer's, on one interface.

An entry turns a :class:`~otsolve.bench.problems.Problem` into an :class:`Outcome` whose ``value``
is on the scale of its objective (``"exact"``: the transport cost; ``"entropic"``: the objective
``<C, P> + reg KL(P | a b^T)`` at the problem's ``reg``, from the returned plan or potentials by
the evaluators of :mod:`otsolve.bench.reference`). Peers are imported only when they run.
"""
from __future__ import annotations

import importlib.util
import math
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from .reference import entropic_primal, semidual_value

SINKHORN_TOL = 1e-6     # marginal tolerance given to every Sinkhorn (otsolve's relative L1, POT's stopThr)
SINKHORN_MAX_ITER = 10_000
SGD_PASSES = 100        # POT's SAG: budget of passes over the n rows (one row a step; it has no stopping test)
GEOMLOSS_SCALING = 0.9  # its default 0.5 ended 3.4% above the optimum (gauss2d, n = 64, reg 1e-2 spread);
                        # 0.9 (its advice for accuracy) 1e-4
HUGE = 2**62            # "no size cap"


@dataclass(frozen=True)
class Outcome:
    """What one solver call returned: ``value`` of its objective, iterations, status, a note."""

    value: float
    n_iter: int | None = None
    status: str = "optimal"
    note: str = ""


@dataclass(frozen=True)
class Solver:
    """A benchmarked solver.

    ``solve(problem) -> Outcome``; ``objective`` is ``"exact"`` or ``"entropic"``; ``needs`` is
    ``"matrix"`` (a dense cost matrix), ``"points"`` (coordinates) or ``"any"``; ``rtol`` is the
    accuracy its settings promise: a relative gap to the certified value above it is flagged;
    ``max_pairs`` caps n m per suite (``{"quick": ..., "full": ...}``); ``families`` restricts it.
    """

    name: str
    library: str
    objective: str
    solve: Callable
    needs: str = "matrix"
    rtol: float = 1e-6
    iterative: bool = False
    max_pairs: dict = field(default_factory=lambda: {"quick": 2**22, "full": 2**25})
    families: tuple | None = None
    metrics: tuple = ("sqeuclidean", "euclidean", None)

    def skip_reason(self, problem, suite) -> str | None:
        """Why this solver does not run on ``problem`` in ``suite`` (None: it runs)."""
        if self.objective not in problem.objectives:
            return f"{problem.family} problems are solved for {', '.join(problem.objectives)} OT only"
        if self.families is not None and problem.family not in self.families:
            return f"runs on {', '.join(self.families)} problems only"
        if problem.metric not in self.metrics:
            return f"no {problem.metric or 'matrix-only'} cost"
        if self.needs == "points" and not problem.has_points:
            return "needs point coordinates (the problem has a cost matrix only)"
        if self.needs == "matrix" and not problem.dense_ok:
            return f"needs the dense cost matrix ({problem.pairs:.2e} pairs)"
        cap = self.max_pairs.get(suite, HUGE)
        if problem.pairs > cap:
            return f"n m above its cap of {cap} pairs in the {suite} suite"
        return None


# -- otsolve -----------------------------------------------------------------------------------

def _status(res):
    return str(res.status)


def _otsolve_exact(problem):
    from .. import exact
    res = exact(problem.C, problem.a, problem.b)
    return Outcome(res.value, res.n_iter, _status(res), res.message if not res.success else "")


def _otsolve_exact_lazy(problem):
    from ..lp import exact_points
    res = exact_points(problem.x, problem.y, problem.a, problem.b, p=1, metric=problem.metric)
    return Outcome(res.value, res.n_iter, _status(res), res.message if not res.success else "")


def _otsolve_multiscale(problem):
    """The multiscale simplex (``otsolve.wasserstein``'s choice above ``MULTISCALE_MIN_PAIRS``):
    on the grid hierarchy for grid histograms, on k-d trees for clouds."""
    from ..lp import exact_multiscale
    from ..lp.grid import solve_grid
    p = 2 if problem.metric == "sqeuclidean" else 1
    if problem.family == "grids":
        side = problem.size
        res = solve_grid(problem.a.reshape(side, side), problem.b.reshape(side, side), p=p, spacing=1.0 / side)[0]
    else:
        res = exact_multiscale(problem.x, problem.y, problem.a, problem.b, p=p, metric="euclidean")
    return Outcome(res.value, res.n_iter, _status(res), res.message if not res.success else "")


def _otsolve_sinkhorn(problem):
    from .. import sinkhorn, sinkhorn_points
    options = dict(reg=problem.reg, tol=SINKHORN_TOL, max_iter=SINKHORN_MAX_ITER)
    if problem.dense_ok:
        res = sinkhorn(problem.C, problem.a, problem.b, **options)
    else:
        res = sinkhorn_points(problem.x, problem.y, problem.a, problem.b, p=1, metric=problem.metric, **options)
    return Outcome(res.value, res.n_iter, _status(res), res.message if not res.success else "")


def _otsolve_semidual(problem):
    from .. import semidual_sgd
    res = semidual_sgd(problem.C, problem.a, problem.b, reg=problem.reg, seed=0)
    return Outcome(res.value, res.n_iter, _status(res), res.message if not res.success else "")


# -- POT ---------------------------------------------------------------------------------------

def _pot_emd(problem):
    import ot
    _, log = ot.emd(problem.a, problem.b, problem.C, numItermax=10**9, log=True)
    return Outcome(float(log["cost"]), None, "optimal" if log["warning"] is None else "max_iter",
                   log["warning"] or "")


def _pot_emd2_lazy(problem):
    import ot
    value, log = ot.emd2_lazy(problem.x, problem.y, problem.a, problem.b, metric=problem.metric,
                              numItermax=10**9, log=True, return_matrix=False)
    return Outcome(float(value), None, "optimal" if log["warning"] is None else "max_iter", log["warning"] or "")


def _pot_sinkhorn(method):
    def solve(problem):
        import ot
        plan, log = ot.sinkhorn(problem.a, problem.b, problem.C, problem.reg, method=method,
                                numItermax=SINKHORN_MAX_ITER, stopThr=SINKHORN_TOL, log=True)
        n_iter = int(log.get("niter", 0))
        status = "max_iter" if n_iter >= SINKHORN_MAX_ITER - 1 else "optimal"
        return Outcome(entropic_primal(problem, plan, problem.reg), n_iter, status)
    return solve


def _pot_sag(problem):
    import ot
    budget = SGD_PASSES * problem.n
    _, log = ot.stochastic.solve_semi_dual_entropic(problem.a, problem.b, problem.C, problem.reg, "SAG",
                                                    numItermax=budget, log=True)
    # POT's beta is the potential g; the value is the semi-dual at g, evaluated here
    return Outcome(semidual_value(problem, log["beta"], problem.reg), budget, "unchecked",
                   f"fixed budget of {SGD_PASSES} passes, no stopping test")


# -- SciPy -------------------------------------------------------------------------------------

def highs_value(problem):
    """(optimal cost, HiGHS status) of the transportation LP with sparse equality constraints."""
    import scipy.optimize
    import scipy.sparse as sp
    n, m = problem.n, problem.m
    A = sp.vstack([sp.kron(sp.eye(n), np.ones((1, m))), sp.kron(np.ones((1, n)), sp.eye(m))]).tocsr()
    res = scipy.optimize.linprog(problem.C.ravel(), A_eq=A, b_eq=np.concatenate([problem.a, problem.b]),
                                 bounds=(0, None), method="highs")
    return (float(res.fun) if res.status == 0 else math.nan), int(res.status)


def _scipy_highs(problem):
    value, status = highs_value(problem)
    return Outcome(value, None, "optimal" if status == 0 else f"status {status}")


def _scipy_lsa(problem):
    from scipy.optimize import linear_sum_assignment
    rows, cols = linear_sum_assignment(problem.C)
    return Outcome(float(problem.C[rows, cols].sum() / problem.n))


# -- GeomLoss and Komiske's wasserstein ----------------------------------------------------------

def _geomloss(problem):
    import torch
    from geomloss import SamplesLoss
    p = 2 if problem.metric == "sqeuclidean" else 1
    # GeomLoss's cost is |x - y|^p / p and its eps = blur^p: for p = 2, OT_reg(C) = 2 OT_{reg/2}(C / 2)
    blur = math.sqrt(problem.reg / 2) if p == 2 else problem.reg
    loss = SamplesLoss("sinkhorn", p=p, blur=blur, debias=False, scaling=GEOMLOSS_SCALING, backend="tensorized")
    t = lambda v: torch.as_tensor(v, dtype=torch.float64)  # noqa: E731
    with torch.no_grad():
        value = float(loss(t(problem.a), t(problem.x), t(problem.b), t(problem.y)))
    return Outcome(p * value, None, "unchecked", f"eps-scaling schedule (scaling {GEOMLOSS_SCALING}), no stopping test")


def _wasserstein(problem):
    import wasserstein
    emd = wasserstein.EMD(beta=2.0 if problem.metric == "sqeuclidean" else 1.0, norm=False)
    value = emd(problem.a, np.ascontiguousarray(problem.x), problem.b, np.ascontiguousarray(problem.y))
    return Outcome(float(value), None, "unchecked", "status not read (untested here: not installed)")


# -- the registry ------------------------------------------------------------------------------

QUICK_SMALL = {"quick": 2**18, "full": 2**22}
LAZY_PEER_CAP = {"quick": 2**22, "full": 2**23}  # POT's emd2_lazy: 2048 points a side (64 x 64 pixels
                                                 # took it 33-111 s a call: a quarter of the full suite)
SOLVERS: dict[str, Solver] = {}
MISSING: dict[str, str] = {}  # peer name -> why it is not in SOLVERS


def register(solver: Solver) -> Solver:
    """Add (or replace) a registry entry; ``run(solvers=[solver.name])`` then times it."""
    SOLVERS[solver.name] = solver
    MISSING.pop(solver.name, None)
    return solver


def unregister(name: str) -> None:
    """Remove a registry entry (e.g. one a test added)."""
    SOLVERS.pop(name, None)


def _installed(module):
    return importlib.util.find_spec(module) is not None


def _populate():
    lazy_cap = {"quick": 2**22, "full": 2**26}  # the dense lazy simplex: 8192 points a side (at 128 x 128
                                                # pixels it ran over 15 minutes a call; multiscale takes 2-5 s)
    for s in (Solver("otsolve.exact", "otsolve", "exact", _otsolve_exact),
              Solver("otsolve.exact_lazy", "otsolve", "exact", _otsolve_exact_lazy, needs="points",
                     max_pairs=lazy_cap, metrics=("sqeuclidean", "euclidean")),
              Solver("otsolve.multiscale", "otsolve", "exact", _otsolve_multiscale, needs="points",
                     max_pairs={"quick": 2**22, "full": 2**32}, metrics=("sqeuclidean", "euclidean"),
                     families=("clouds", "grids")),
              Solver("otsolve.sinkhorn", "otsolve", "entropic", _otsolve_sinkhorn, needs="any",
                     rtol=1e-4, iterative=True),
              Solver("otsolve.semidual_sgd", "otsolve", "entropic", _otsolve_semidual, rtol=1e-2,
                     iterative=True, max_pairs=QUICK_SMALL)):
        register(s)
    if _installed("ot"):
        import ot
        register(Solver("pot.emd", "POT", "exact", _pot_emd))
        if hasattr(ot, "emd2_lazy"):
            # up to 8192 points a side: at 128 x 128 pixels it needs hours (single-threaded pricing)
            register(Solver("pot.emd2_lazy", "POT", "exact", _pot_emd2_lazy, needs="points", max_pairs=LAZY_PEER_CAP,
                            metrics=("sqeuclidean", "euclidean")))
        else:
            MISSING["pot.emd2_lazy"] = f"POT {ot.__version__} has no emd2_lazy (0.9.6 and later)"
        register(Solver("pot.sinkhorn", "POT", "entropic", _pot_sinkhorn("sinkhorn"), rtol=1e-4, iterative=True))
        register(Solver("pot.sinkhorn_log", "POT", "entropic", _pot_sinkhorn("sinkhorn_log"), rtol=1e-4,
                        iterative=True, max_pairs=QUICK_SMALL))
        register(Solver("pot.sag", "POT", "entropic", _pot_sag, rtol=1e-2, iterative=True,
                        max_pairs={"quick": 2**16, "full": 2**20}))
    else:
        for name in ("pot.emd", "pot.emd2_lazy", "pot.sinkhorn", "pot.sinkhorn_log", "pot.sag"):
            MISSING[name] = "POT is not installed (pip install pot)"
    register(Solver("scipy.highs", "SciPy", "exact", _scipy_highs, max_pairs={"quick": 2**16, "full": 2**17}))
    register(Solver("scipy.lsa", "SciPy", "exact", _scipy_lsa, families=("assignment",)))
    if _installed("geomloss") and _installed("torch"):
        register(Solver("geomloss.sinkhorn", "GeomLoss", "entropic", _geomloss, needs="points", rtol=1e-2,
                        iterative=True, max_pairs={"quick": 2**18, "full": 2**24},
                        metrics=("sqeuclidean", "euclidean")))
    else:
        MISSING["geomloss.sinkhorn"] = "GeomLoss (and torch) not installed (pip install geomloss torch)"
    if _installed("wasserstein"):
        register(Solver("wasserstein.emd", "wasserstein", "exact", _wasserstein, needs="points",
                        max_pairs={"quick": 2**20, "full": 2**24}, metrics=("sqeuclidean", "euclidean")))
    else:
        MISSING["wasserstein.emd"] = "Komiske's wasserstein is not installed (pip install wasserstein; its wheels need numpy < 2)"


_populate()

"""One chunk of pairs, solved where it lands (this process or a Dask worker): the data each
method needs (built once, shipped once) and the solve of a list of pairs (I[q], J[q])."""
from __future__ import annotations

import contextlib
import inspect
import math
import warnings
from dataclasses import dataclass

import numba
import numpy as np

from .._costs import cost_code, extent_bound
from .._result import Status
from .._threads import threads_for
from ..entropic import sinkhorn_points
from ..entropic._problem import DENSE_MAX_PAIRS
from ..entropic.sinkhorn import _check_options
from ..lp.network_simplex import CERTIFICATE_RTOL, REDUCED_COST_TOL
from ..sliced import _kernels as sliced_kernels
from ..sliced.sliced import project_sorted
from ..wasserstein import DENSE_MAX_ENTRIES, wasserstein
from . import _kernels


@dataclass(frozen=True)
class Packed:
    """All clouds in one array: cloud k is points[offsets[k]:offsets[k + 1]] with its weights
    (zero-weight points removed; weights None when every cloud is uniform)."""
    points: np.ndarray
    weights: np.ndarray | None
    offsets: np.ndarray

    def cloud(self, k):
        lo, hi = self.offsets[k], self.offsets[k + 1]
        w = None if self.weights is None else self.weights[lo:hi]
        return self.points[lo:hi], w


@dataclass(frozen=True)
class Projected:
    """Every cloud projected on the directions and sorted: rows (L, total) of values and of
    cumulative weights, cloud k in columns offsets[k]:offsets[k + 1]."""
    values: np.ndarray
    cumulative: np.ndarray
    offsets: np.ndarray


@dataclass(frozen=True)
class Spec:
    """What to solve, beside the data: method, order p, metric and the method's options."""
    method: str
    p: float
    metric: str
    options: tuple  # sorted (name, value) pairs


def prepare(packed: Packed, spec: Spec, theta=None):
    """The data shipped to every worker (one object, scattered once): the packed clouds, or for
    "sliced"/"1d" every cloud's projections on the directions theta, sorted."""
    if spec.method not in ("sliced", "1d"):
        return packed
    K = len(packed.offsets) - 1
    clouds = [packed.cloud(k) for k in range(K)]
    return Projected(*project_sorted([x for x, _ in clouds], [w for _, w in clouds], theta))


def solve_chunk(data, I, J, spec: Spec, parallel: bool = True):
    """Solve pairs (I[q], J[q]): returns W_p values, int8 status codes and [(q, message)] for
    the pairs that did not reach optimality."""
    if spec.method == "sinkhorn":
        return _sinkhorn_chunk(data, I, J, spec, parallel)
    if spec.method == "exact":
        return _exact_chunk(data, I, J, spec, parallel)
    S, CS, offsets = data.values, data.cumulative, data.offsets
    values = np.empty(len(I))
    with _threads(parallel, pair_work(spec, offsets, S.shape[0], I, J).sum()):
        (sliced_kernels.sliced_pairs if parallel else sliced_kernels.sliced_pairs_serial)(S, CS, offsets, I, J,
                                                                                        spec.p, values)
    return np.maximum(values, 0.0) ** (1.0 / spec.p), np.zeros(len(I), np.int8), []


EXACT_MESSAGES = {
    Status.MAX_ITER: "stopped after max_iter={max_iter} pivots before optimality: the plan is not optimal",
    Status.NUMERICAL_ERROR: (f"the simplex stopped with max_ij f_i + g_j - C_ij above {CERTIFICATE_RTOL:g} of the "
                             "reduced costs' spread: optimality is not certified; rescale the clouds"),
}


def _exact_chunk(packed, I, J, spec, parallel):
    """Pairs whose cost matrix fits (DENSE_MAX_ENTRIES) in one parallel kernel; larger ones one
    by one through otsolve.wasserstein, which then prices on the fly."""
    sizes = np.diff(packed.offsets)
    big = sizes[I] * sizes[J] > DENSE_MAX_ENTRIES
    values, status, messages = np.empty(len(I)), np.zeros(len(I), np.int8), []
    small = np.flatnonzero(~big)
    if len(small):
        code, cost_p = cost_code(spec.metric, spec.p)
        max_iter = dict(spec.options).get("max_iter")
        max_iter = -1 if max_iter is None else max_iter
        weights = packed.weights if packed.weights is not None else _uniform(packed.offsets)
        out, codes = np.empty(len(small)), np.empty(len(small), np.int64)
        kernel = _kernels.exact_pairs if parallel else _kernels.exact_pairs_serial
        with _threads(parallel, pair_work(spec, packed.offsets, 0, I[small], J[small]).sum()):
            kernel(packed.points, weights, packed.offsets, I[small], J[small], code, cost_p, REDUCED_COST_TOL,
                   CERTIFICATE_RTOL, max_iter, out, codes, np.empty(len(small), np.int64))
        values[small] = np.maximum(out, 0.0) ** (1.0 / spec.p)
        status[small] = codes
        messages = [(int(q), EXACT_MESSAGES[Status(int(c))].format(max_iter=max_iter))
                    for q, c in zip(small, codes) if c != Status.OPTIMAL]
    return values, status, sorted(messages + _loop_rest(packed, I, J, spec, big, values, status, parallel))


KERNEL_REG_MIN = 1e-3  # below this x the pair's cost bound plain iterations rarely certify (the
                       # kernel has no Newton phase): K = 60 x 300 points, every pair fell back at
                       # 4.8e-4 (1.2x the time of going one by one); at 4.8e-3 it was 1.4x faster

def _sinkhorn_chunk(packed, I, J, spec, parallel):
    """The pairs the batched kernel covers (balanced OT, tol > 0, costs that fit
    DENSE_MAX_PAIRS and reg) in one parallel kernel; the others, and every pair it does not
    certify, one by one through otsolve.wasserstein, which gives their status and message."""
    values, status = np.empty(len(I)), np.zeros(len(I), np.int8)
    rest = np.ones(len(I), bool)
    settings = _sinkhorn_settings(spec)
    if settings is not None:
        reg, tol, max_iter, eps_scaling = settings
        code, cost_p = cost_code(spec.metric, spec.p)
        work = pair_work(spec, packed.offsets, 0, I, J)
        scales = _pair_bounds(packed, I, J, code, cost_p)
        with np.errstate(over="ignore", invalid="ignore"):  # inf and 0 bounds are left to the checks there
            fits = (work <= DENSE_MAX_PAIRS) & (scales >= np.finfo(float).tiny) & np.isfinite(scales / reg) \
                & (reg >= KERNEL_REG_MIN * scales)
        q = np.flatnonzero(fits)
        if len(q):
            weights = packed.weights if packed.weights is not None else _uniform(packed.offsets)
            out, certified = np.empty(len(q)), np.zeros(len(q), np.bool_)
            kernel = _kernels.sinkhorn_pairs if parallel else _kernels.sinkhorn_pairs_serial
            with _threads(parallel, work[q].sum()):
                kernel(packed.points, weights, packed.offsets, I[q], J[q], scales[q], code, cost_p, reg, tol,
                       max_iter, eps_scaling, out, certified, np.empty(len(q), np.int64))
            values[q] = np.maximum(out, 0.0) ** (1.0 / spec.p)
            rest[q[certified]] = False
    return values, status, _loop_rest(packed, I, J, spec, rest, values, status, parallel)


SINKHORN_DEFAULTS = {name: arg.default for name, arg in inspect.signature(sinkhorn_points).parameters.items()
                     if arg.default is not inspect.Parameter.empty}


def _sinkhorn_settings(spec):
    """(reg, tol, max_iter, eps_scaling) when the batched kernel covers the options; None when
    otsolve.wasserstein must solve every pair (unbalanced, tol = 0, or options it will refuse)."""
    options = {**SINKHORN_DEFAULTS, **dict(spec.options)}
    if "reg" not in options:
        return None
    try:
        reg, tol, max_iter, eps_scaling, reg_m = _check_options(options["reg"], options["tol"], options["max_iter"],
                                                                 options["eps_scaling"], options["reg_m"])
    except (TypeError, ValueError):
        return None
    if not (math.isinf(reg_m) and tol > 0 and math.isfinite(1.0 / reg)):
        return None
    return reg, tol, max_iter, eps_scaling


def _pair_bounds(packed, I, J, code, p):
    """max_cost_bound of each pair (where otsolve.sinkhorn_points starts its annealing), from
    the bounding boxes of the clouds."""
    low = np.minimum.reduceat(packed.points, packed.offsets[:-1], axis=0)
    high = np.maximum.reduceat(packed.points, packed.offsets[:-1], axis=0)
    with np.errstate(over="ignore"):
        return extent_bound(np.maximum(high[I], high[J]) - np.minimum(low[I], low[J]), code, p)


def _loop_rest(packed, I, J, spec, rest, values, status, parallel):
    """Solve the pairs where ``rest`` is True one by one (_loop_chunk) into values and status;
    returns their [(q, message)]."""
    rest = np.flatnonzero(rest)
    if not len(rest):
        return []
    with contextlib.nullcontext() if parallel else threads_for(0):  # Dask: one Numba thread a worker
        values[rest], status[rest], messages = _loop_chunk(packed, I[rest], J[rest], spec)
    return [(int(rest[q]), m) for q, m in messages]


def pair_work(spec, offsets, n_directions, I, J):
    """Cost entries (exact, Sinkhorn) or merge steps (sliced, 1-D) of each pair: the unit of
    otsolve._threads.threads_for."""
    sizes = np.diff(offsets)
    if spec.method in ("sliced", "1d"):
        return n_directions * (sizes[I] + sizes[J])
    return sizes[I] * sizes[J]


@contextlib.contextmanager
def _threads(parallel, work):
    """All threads, taking the next pair when free (pivot counts vary), for enough work; one
    thread for a small chunk, whose wake-up of the others could cost more than the pairs."""
    if not parallel:
        yield
        return
    with threads_for(work), numba.parallel_chunksize(1):
        yield


def _uniform(offsets):
    sizes = np.diff(offsets)
    return np.repeat(1.0 / sizes, sizes)


def _loop_chunk(packed, I, J, spec):
    """One otsolve.wasserstein call per pair (Sinkhorn; exact on the largest clouds): each is
    already parallel inside."""
    values, status, messages = np.empty(len(I)), np.zeros(len(I), np.int8), []
    for q, (i, j) in enumerate(zip(I, J)):
        (x, a), (y, b) = packed.cloud(i), packed.cloud(j)
        a = None if a is None else a / a.sum()
        b = None if b is None else b / b.sum()
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # reported once for the job, with the pairs
                res = wasserstein(x, y, a, b, p=spec.p, metric=spec.metric, method=spec.method, **dict(spec.options))
            values[q], status[q] = res.value, res.status
            if res.status != Status.OPTIMAL:
                messages.append((q, res.message))
        except (ArithmeticError, ValueError) as err:  # a failed pair must not lose the others
            values[q], status[q] = np.nan, Status.NUMERICAL_ERROR
            messages.append((q, f"{type(err).__name__}: {err}"))
    return values, status, messages

"""One chunk of pairs, solved where it lands (this process or a Dask worker): the data each
method needs (built once, shipped once) and the solve of a list of pairs (I[q], J[q])."""
from __future__ import annotations

import contextlib
import warnings
from dataclasses import dataclass

import numba
import numpy as np

from .._costs import cost_code
from .._result import Status
from .._threads import threads_for
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
        with contextlib.nullcontext() if parallel else threads_for(0):  # Dask: one Numba thread a worker
            return _loop_chunk(data, I, J, spec)
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
    if big.any():
        big = np.flatnonzero(big)
        v, st, msg = _loop_chunk(packed, I[big], J[big], spec)
        values[big], status[big] = v, st
        messages = sorted(messages + [(int(big[q]), m) for q, m in msg])
    return values, status, messages


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

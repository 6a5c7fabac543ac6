"""Semi-discrete optimal transport by averaged SGD: a sampled source against weighted points."""
from __future__ import annotations

import math

import numba
import numpy as np

from .._costs import _cost_matrix, cost_code, point_source
from .._result import OTResult
from .._validation import as_float_array, check_count, check_points, check_positive, check_weights
from .._threads import MeasuredThreads
from . import _kernels
from .sgd import (BUDGET, CONVERGED, DEFAULT_BATCH, STALLED, VALUE_FLOOR, _budget, _progress_bar, _stalled,
                  asgd_step, check_reg_range, mass_term, run_status)

MAX_CHECKS = 500      # default budget when n_iter is None: this many checks of check_every steps
SAMPLING_SIGMAS = 3.0  # a stalled run is optimal when its cell masses match b to this many sigmas
SPREAD_ROWS = 1000     # evaluation samples whose costs estimate the cost spread,
BLOCK_PAIRS = 2**16    # computed this many at a time


def semidiscrete_sgd(sample_source, y, b=None, *, reg=0.0, n_iter=None, max_iter=None,
                     batch_size=DEFAULT_BATCH, lr=None, seed=None, tol=1e-3, n_eval=20000,
                     check_every=None, p=2, metric="euclidean", progress=False) -> OTResult:
    r"""Solve semi-discrete (entropic) optimal transport from samples by averaged SGD.

    .. math::
        W_\varepsilon = \max_g \mathbb{E}_{x \sim \alpha}\, g^{c,\varepsilon}(x) + \sum_j b_j g_j,
        \quad g^{c,\varepsilon}(x) = -\varepsilon \log \sum_j b_j e^{(g_j - c(x, y_j))/\varepsilon}

    with :math:`c(x, y) = \mathrm{metric}(x, y)^p`. Each step draws ``batch_size`` samples of the
    source and moves g by ``lr / sqrt(k)`` times the averaged gradient ``b - softmax`` (``b`` minus
    the indicator of the Laguerre cell when ``reg = 0``); the result is the average of the iterates
    (Genevay et al. 2016, alg. 2). For ``reg = 0``, g are the weights of the power (Laguerre)
    diagram whose cells ``{x : c(x, y_j) - g_j <= c(x, y_k) - g_k for all k}`` have masses b.

    Parameters
    ----------
    sample_source : callable
        ``sample_source(n, rng)`` returns n samples of the source, an (n, d) array (n values when
        d = 1), with ``rng`` a ``numpy.random.Generator``.
    y : (m, d) array_like
        Target points.
    b : (m,) array_like, optional
        Target weights (uniform when omitted); their sum is the mass of the source.
    reg : float, default 0
        Entropic strength epsilon >= 0, in cost units.
    n_iter, max_iter : int, optional
        Budget of steps (synonyms); default ``500 * check_every``.
    batch_size : int, default 64
    lr : float, optional
        Step constant; default the larger of ``reg / max(b)`` and ``0.5 spread sqrt(m)``, with
        spread the range of the costs.
    seed : int or numpy.random.Generator, optional
    tol : float, default 1e-3
        Stop when the objective, estimated on ``n_eval`` fixed samples every ``check_every``
        steps (default ``n_eval / batch_size``), changed by less than ``tol / 2`` relative over
        the last half of the run. The status is then ``optimal`` only if the cell masses
        counted on those samples match b within their sampling error (3 standard deviations)
        plus ``tol`` times the mass (the first-order condition, as well as samples can tell).
    n_eval : int, default 20000
        Samples of the source on which the objective is estimated (Monte Carlo).
    p, metric
        The cost, as in :func:`otsolve.cost_matrix`.
    progress : bool, default False
        Show a tqdm progress bar.

    Returns
    -------
    OTResult
        ``g`` (m,), ``value`` the objective estimated on the evaluation samples, ``f`` the
        c-transform at those samples, ``value_linear`` the transport cost of the implied plan and
        ``marginal_error`` the L1 error of its cell masses, both estimated on the same samples;
        ``dual_value`` = ``value`` (the semi-dual is a dual objective); ``plan`` is None and
        ``duality_gap``, ``max_dual_violation`` are NaN: a sampled continuous source has no
        certificate (the status rests on the stall rule and the cell masses, see ``tol``).

    Examples
    --------
    >>> import numpy as np, otsolve
    >>> res = otsolve.semidiscrete_sgd(lambda n, rng: rng.random(n), [0.25, 0.75], seed=0)
    >>> round(res.value, 2)  # W2^2 between U[0, 1] and (d_0.25 + d_0.75) / 2
    0.02
    """
    if not callable(sample_source):
        raise TypeError(f"sample_source must be a callable sample_source(n, rng); got "
                        f"{type(sample_source).__name__}")
    y = check_points(y, "y")
    m, dim = y.shape
    b = check_weights(b, m, "b", dim_name="points in y")
    reg = check_positive(reg, "reg", allow_zero=True)
    batch_size = check_count(batch_size, "batch_size")
    lr = None if lr is None else check_positive(lr, "lr")
    tol = check_positive(tol, "tol", allow_zero=True)
    n_eval = check_count(n_eval, "n_eval")
    code, p = cost_code(metric, p)
    rng = np.random.default_rng(seed)
    x_eval = _draw(sample_source, n_eval, rng, dim)
    check_every = max(1, n_eval // batch_size) if check_every is None else \
        check_count(check_every, "check_every")
    budget = _budget(n_iter, max_iter, MAX_CHECKS * check_every)
    state = _State(x_eval, y, b, code, p, reg)
    check_reg_range(reg, state.spread)
    state.threads = MeasuredThreads(("points", batch_size, m))
    g, g_avg, buf, b1 = np.zeros(m), np.zeros(m), np.empty((batch_size, m)), b / b.sum()
    lr = max(reg / b1.max(), asgd_step(state.spread, m)) if lr is None else lr
    steps, trace, stop = 0, [], BUDGET
    with _progress_bar(budget, progress) as bar:
        while steps < budget and stop == BUDGET:
            k = min(check_every, budget - steps)
            samples = point_source(_draw(sample_source, k * batch_size, rng, dim), y, code, p)
            idx = np.arange(k * batch_size).reshape(k, batch_size)
            state.threads.run(lambda lo, hi: _kernels.asgd_steps(samples, g, g_avg, state.log_b, b1, reg, lr,
                                                                 steps + lo, idx[lo:hi], buf), k)
            steps += k
            bar.update(k)
            trace.append(state.evaluate(g_avg)[0])
            if _stalled(trace, tol, state.denominator(trace[-1])):
                stop = STALLED
    return _result(state, g_avg, steps, trace, stop, budget, tol)


class _State:
    """The evaluation samples and the exact (on them) semi-dual evaluation."""

    def __init__(self, x_eval, y, b, code, p, reg):
        self.x, self.y, self.b, self.reg = x_eval, y, b, reg
        self.source = point_source(x_eval, y, code, p)
        self.mass = float(b.sum())
        self.a = np.full(x_eval.shape[0], self.mass / x_eval.shape[0])
        with np.errstate(divide="ignore"):
            self.log_b = np.log(b)
        self.chunks = 4 * numba.get_num_threads()
        self.threads = None  # set by the caller, which knows the batch size
        self.offset, top = _cost_range(x_eval[:SPREAD_ROWS], y, code, p)
        self.spread = (top - self.offset) or 1.0

    def evaluate(self, g):
        n, m = self.x.shape[0], self.y.shape[0]
        f, linear, colsum = np.empty(n), np.empty(n), np.empty((self.chunks, m))
        with self.threads.using():
            _kernels.evaluate(self.source, n, self.a, g, self.log_b, self.reg, f, colsum, linear)
        value = float(self.a @ f + self.b @ g) + mass_term(self.reg, self.mass)
        return value, f, colsum.sum(axis=0), float(linear.sum())

    def denominator(self, value):
        return max(abs(value - self.offset * self.mass), VALUE_FLOOR * self.spread * self.mass)

    def sampling_error(self):
        """SAMPLING_SIGMAS standard deviations of the L1 error of the cell masses counted on the
        n_eval samples at the optimal g: no smaller error can be told apart from noise."""
        n, b = self.x.shape[0], self.b
        return SAMPLING_SIGMAS * float(np.sqrt(b * np.maximum(self.mass - b, 0.0) / n).sum())


def _cost_range(x, y, code, p):
    """min and max of the costs between x and y, by blocks of rows: O(m) memory."""
    lo, hi = math.inf, -math.inf
    rows = max(1, BLOCK_PAIRS // y.shape[0])
    out = np.empty((min(rows, x.shape[0]), y.shape[0]))
    for start in range(0, x.shape[0], rows):
        block = out[:min(rows, x.shape[0] - start)]
        _cost_matrix(x[start:start + rows], y, code, p, block)
        lo, hi = min(lo, float(block.min())), max(hi, float(block.max()))
    return lo, hi


def _draw(sample_source, n, rng, dim):
    """Call the sampler and check its output: a finite (n, dim) array."""
    out = as_float_array(sample_source(n, rng), "sample_source(n, rng) output")
    if out.ndim == 1 and dim == 1:
        out = out.reshape(-1, 1)
    if out.shape != (n, dim):
        raise ValueError(f"sample_source(n, rng) must return an array of shape (n, d) = ({n}, {dim}) "
                         f"(d from y); got shape {out.shape}")
    if not np.isfinite(out).all():
        raise ValueError("sample_source(n, rng) returned non-finite values (NaN or inf)")
    return out


def _result(state, g, steps, trace, stop, budget, tol):
    value, f, col, linear = state.evaluate(g)
    error = float(np.abs(col - state.b).sum())
    if stop == STALLED and error <= state.sampling_error() + tol * state.mass:
        stop = CONVERGED
    status, message = run_status(stop, math.isfinite(value), budget)
    return OTResult(value=value, value_linear=linear, plan=None, f=f, g=g, status=status,
                    n_iter=steps, marginal_error=error,
                    dual_value=value, message=message, trace=np.asarray(trace, float))

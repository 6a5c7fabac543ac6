"""Wasserstein distances between point clouds, by any otsolve method."""
from __future__ import annotations

import dataclasses

from ._costs import check_cost_range, cost_code, cost_matrix
from ._validation import check_choice, check_point_clouds
from .lp import exact, exact_multiscale, exact_points
from .entropic import sinkhorn_points

METHODS = ("exact", "sinkhorn")
DENSE_MAX_ENTRIES = 2**24  # above this many costs (128 MiB) the exact solver prices on the fly
MULTISCALE_MIN_PAIRS = 2**22  # above this many pairs (n = m ~ 2000) the multiscale solver is faster


def wasserstein(x, y, a=None, b=None, *, p=2, method="exact", metric="euclidean", lazy=None, multiscale=None,
                **options):
    r"""Return the p-Wasserstein distance between two weighted point clouds.

    .. math:: W_p(\alpha, \beta) = \Big(\min_{P \in U(a, b)} \sum_{ij} P_{ij}\, d(x_i, y_j)^p\Big)^{1/p}

    Parameters
    ----------
    x, y : (n, d), (m, d) array_like
        Point clouds.
    a, b : (n,), (m,) array_like, optional
        Weights (uniform when omitted).
    p : float, default 2
    method : {"exact", "sinkhorn"}
        The solver; further keyword ``options`` are passed to it. ``"sinkhorn"`` needs ``reg``
        and runs :func:`otsolve.sinkhorn_points` (costs recomputed on the fly, memory O(n + m)).
    metric : {"euclidean", "sqeuclidean", "cityblock"}
        The ground distance d.
    lazy : bool, optional
        Exact method: compute costs on the fly instead of building the n x m matrix (O(n + m)
        memory; then ``max_iter`` is the only option). By default only when the matrix would
        exceed ``DENSE_MAX_ENTRIES`` entries. ``"sinkhorn"`` is always lazy (``lazy=False`` is
        refused).
    multiscale : bool, optional
        Solve by :func:`otsolve.lp.exact_multiscale` (sparse coarse-to-fine network simplex,
        certified over all pairs; memory O(n + m + arcs); ``max_iter`` is its only option). By
        default when there are more than ``MULTISCALE_MIN_PAIRS`` pairs, ``lazy`` is not False
        and no other option is given.

    Returns
    -------
    OTResult
        ``value`` is W_p; ``value_linear`` is the optimal transport cost ``W_p ** p``; the
        certificate fields refer to that cost. With ``method="sinkhorn"``:
        ``value = <C, P> ** (1/p)`` for the entropic plan P, ``value_linear = <C, P>``; the other
        fields are those of the entropic solve.

    Examples
    --------
    >>> import otsolve
    >>> round(otsolve.wasserstein([0.0, 1.0], [2.0, 3.0], p=1).value, 12)
    2.0
    """
    check_choice(method, "method", METHODS)
    if method == "sinkhorn":
        if lazy is False:
            raise ValueError("lazy=False does not apply to method='sinkhorn': it always computes "
                             "costs on the fly (as a matrix for small problems); leave lazy=None")
        res = sinkhorn_points(x, y, a, b, p=p, metric=metric, **options)
        return dataclasses.replace(res, value=max(res.value_linear, 0.0) ** (1.0 / p))
    x, y = check_point_clouds(x, y)
    check_cost_range(x, y, *cost_code(metric, p), metric)  # every exact path: no silent 0 or inf
    if not (multiscale is None or isinstance(multiscale, bool)):
        raise TypeError(f"multiscale must be None, True or False; got {multiscale!r}")
    if multiscale is None:
        multiscale = lazy is not False and not options and x.shape[0] * y.shape[0] > MULTISCALE_MIN_PAIRS
    if multiscale:
        unknown = set(options) - {"max_iter"}
        if unknown:
            raise TypeError(f"wasserstein(..., multiscale=True) takes only max_iter; got "
                            f"{', '.join(sorted(unknown))} (use multiscale=False)")
        res = exact_multiscale(x, y, a, b, p=p, metric=metric, **options)
        return dataclasses.replace(res, value=max(res.value, 0.0) ** (1.0 / p))
    if lazy is None:
        lazy = x.shape[0] * y.shape[0] > DENSE_MAX_ENTRIES
    if lazy:
        unknown = set(options) - {"max_iter"}
        if unknown:
            raise TypeError(f"wasserstein(..., lazy=True) does not take {', '.join(sorted(unknown))}; "
                            "only max_iter (warm starts need the cost matrix: lazy=False)")
        res = exact_points(x, y, a, b, p=p, metric=metric, **options)
    else:
        res = exact(cost_matrix(x, y, p=p, metric=metric), a, b, **options)
    return dataclasses.replace(res, value=max(res.value, 0.0) ** (1.0 / p))

"""Exact Wasserstein distance between histograms on a regular grid (images, volumes)."""
from __future__ import annotations

import numbers

import numpy as np

from .._validation import as_float_array, check_finite, check_positive

GRID_MAX_DIM = 3


def wasserstein_grid(A, B, *, p=2, spacing=1.0, multiscale=None):
    r"""Return the exact p-Wasserstein distance between two histograms on the same grid.

    .. math:: W_p(A, B) = \Big(\min_{P \in U(A / |A|, B / |B|)} \sum_{kl} P_{kl}\, |z_k - z_l|^p\Big)^{1/p}

    where z_k are the pixel (voxel) centres, ``index * spacing``. This is the setting of the
    DOTmark benchmark (Schrieber, Schuhmacher, Gottschlich 2017). Empty pixels carry no mass
    and are left out of the solve (their potentials are set afterwards).

    Parameters
    ----------
    A, B : array_like, same shape, 1-D, 2-D or 3-D
        Non-negative masses, each with a positive total; normalised to unit mass.
    p : float, default 2
        Exponent of the Euclidean ground distance.
    spacing : float or sequence of floats, default 1.0
        Grid step, one for all axes or one per axis.
    multiscale : bool, optional
        As in :func:`otsolve.wasserstein` (default: multiscale above its size threshold).

    Returns
    -------
    OTResult
        As :func:`otsolve.wasserstein`: ``value`` is W_p, ``value_linear`` its p-th power;
        the plan and potentials index the pixels in C order (``A.ravel()``).

    Raises
    ------
    ValueError, TypeError
        Shapes differ, a grid is not 1-D to 3-D, has negative or non-finite values or no mass.

    Examples
    --------
    >>> import otsolve
    >>> round(otsolve.wasserstein_grid([1.0, 0.0, 0.0], [0.0, 0.0, 1.0], p=1).value, 12)
    2.0
    """
    from ..wasserstein import wasserstein  # imported here: wasserstein imports this package
    A, B = _check_grid(A, "A"), _check_grid(B, "B")
    if A.shape != B.shape:
        raise ValueError(f"A and B must have the same grid shape: A.shape == {A.shape}, B.shape == {B.shape}")
    step = _check_spacing(spacing, A.ndim)
    points = np.stack(np.meshgrid(*[np.arange(s) * h for s, h in zip(A.shape, step)], indexing="ij"),
                      axis=-1).reshape(-1, A.ndim)
    a, b = A.ravel() / A.sum(), B.ravel() / B.sum()
    return wasserstein(points, points, a, b, p=p, multiscale=multiscale)


def _check_grid(A, name):
    A = as_float_array(A, name)
    if not 1 <= A.ndim <= GRID_MAX_DIM or A.size == 0:
        raise ValueError(f"{name} must be a non-empty 1-D, 2-D or 3-D grid of masses; got shape {A.shape}")
    check_finite(A, name)
    if (A < 0).any():
        where = tuple(int(k) for k in np.argwhere(A < 0)[0])
        raise ValueError(f"{name} has a negative mass {float(A[where])} at {where}; masses must be >= 0")
    if not A.sum() > 0:
        raise ValueError(f"{name} is all zeros; it needs positive total mass")
    return A


def _check_spacing(spacing, ndim):
    if isinstance(spacing, numbers.Real) and not isinstance(spacing, bool):
        return [check_positive(spacing, "spacing")] * ndim
    try:
        step = [check_positive(h, "spacing") for h in spacing]
    except TypeError:
        raise TypeError(f"spacing must be a positive number or one per axis; got {spacing!r}") from None
    if len(step) != ndim:
        raise ValueError(f"spacing has {len(step)} entries but the grids have {ndim} axes")
    return step

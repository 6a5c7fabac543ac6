"""The one result type shared by every otsolve solver."""
from __future__ import annotations

import enum
from dataclasses import dataclass, field

import numpy as np


class ConvergenceWarning(UserWarning):
    """A solver stopped (``max_iter``, ``n_iter``) before its stopping rule was met."""


class Status(enum.IntEnum):
    """Solver status, with the codes of :func:`scipy.optimize.linprog`.

    A status also compares equal to its lower-case name (``res.status == "optimal"``);
    ``"converged"`` is accepted for ``OPTIMAL``, the word iterative solvers use.
    """

    OPTIMAL = 0
    MAX_ITER = 1
    INFEASIBLE = 2
    UNBOUNDED = 3
    NUMERICAL_ERROR = 4

    def __eq__(self, other):
        if isinstance(other, str):
            word = other.lower()
            return word == self.name.lower() or (self is Status.OPTIMAL and word == "converged")
        return int(self) == other

    def __ne__(self, other):  # int's own __ne__ would answer for strings (always True)
        return not self == other

    __hash__ = enum.IntEnum.__hash__

    def __str__(self):
        return self.name.lower()


@dataclass(frozen=True)
class OTResult:
    """Outcome of an optimal transport solve.

    Attributes
    ----------
    value : float
        Objective of the problem solved: ``<C, P>`` for exact OT, ``<C, P> + reg * KL(P | a b^T)``
        for entropic OT, the semi-dual objective for stochastic solvers.
    value_linear : float
        ``<C, P>`` of the returned plan (equal to ``value`` for exact OT), as in POT.
    plan : scipy.sparse.csr_array, ndarray or None
        The transport plan: sparse for exact OT (at most ``n + m - 1`` non-zeros), dense for
        Sinkhorn on a matrix, ``None`` when not materialised (point clouds, stochastic solvers).
    f, g : (n,), (m,) ndarray
        Dual potentials in cost units.
    status : Status
    n_iter : int
        Pivots (exact), iterations (Sinkhorn) or stochastic steps.
    marginal_error : float
        ``max(||P 1 - a||_1, ||P^T 1 - b||_1)`` of the returned plan (or of the plan implied by f, g).
    max_dual_violation : float
        ``max_ij (f_i + g_j - C_ij)`` clipped at 0: how far ``(f, g)`` is from feasible for the
        unregularised dual. Zero (to rounding) certifies exact OT together with ``duality_gap``.
    dual_value : float
        The dual objective at ``(f, g)``: ``a.f + b.g`` for exact OT.
    duality_gap : float
        Primal minus dual objective of the problem solved: zero (to rounding) at an optimum.
        Kept as solved when ``value`` is post-processed (e.g. W_p = cost ** (1/p)).
    message : str
    trace : ndarray or None
        Objective values recorded during the run (stochastic solvers), else ``None``.
    """

    value: float
    value_linear: float
    plan: object
    f: np.ndarray
    g: np.ndarray
    status: Status
    n_iter: int
    marginal_error: float
    max_dual_violation: float = float("nan")
    dual_value: float = float("nan")
    duality_gap: float = float("nan")
    message: str = ""
    trace: np.ndarray | None = field(default=None, repr=False)

    @property
    def success(self) -> bool:
        return self.status == Status.OPTIMAL

    @property
    def potentials(self) -> tuple[np.ndarray, np.ndarray]:
        """The dual potentials ``(f, g)``, as POT's ``OTResult.potentials``."""
        return self.f, self.g

    def __repr__(self):
        return (f"OTResult(value={self.value!r}, status={self.status}, n_iter={self.n_iter}, "
                f"marginal_error={self.marginal_error:.3g}, duality_gap={self.duality_gap:.3g}, "
                f"max_dual_violation={self.max_dual_violation:.3g})")

"""otsolve: discrete optimal transport, exact, entropic and stochastic."""
from ._costs import cost_matrix
from ._result import ConvergenceWarning, OTResult, Status
from .lp import exact, exact_batch, wasserstein_grid
from .stochastic import semidiscrete_sgd, semidual_sgd
from .entropic import sinkhorn, sinkhorn_divergence, sinkhorn_points
from .wasserstein import wasserstein

__version__ = "0.1.0"
__all__ = ["exact", "exact_batch", "sinkhorn", "sinkhorn_points", "sinkhorn_divergence", "semidual_sgd",
           "semidiscrete_sgd", "wasserstein", "wasserstein_grid", "cost_matrix", "OTResult", "Status", "ConvergenceWarning"]

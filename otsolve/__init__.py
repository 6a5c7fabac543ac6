"""otsolve: discrete optimal transport, exact, entropic and stochastic."""
from ._costs import cost_matrix
from ._result import ConvergenceWarning, OTResult, Status
from .exact import exact
from .sinkhorn import sinkhorn, sinkhorn_divergence, sinkhorn_points
from .wasserstein import wasserstein

__version__ = "0.1.0"
__all__ = ["exact", "sinkhorn", "sinkhorn_points", "sinkhorn_divergence", "wasserstein", "cost_matrix", "OTResult", "Status", "ConvergenceWarning"]

"""otsolve: discrete optimal transport, exact, entropic and stochastic."""
from ._costs import cost_matrix
from ._result import ConvergenceWarning, OTResult, Status
from .lp import exact, exact_batch, wasserstein_grid
from .stochastic import semidiscrete_sgd, semidual_sgd
from .entropic import sinkhorn, sinkhorn_divergence, sinkhorn_points
from .sliced import max_sliced_wasserstein, sliced_wasserstein, wasserstein_1d
from .wasserstein import wasserstein
from .collections import PairwiseResult, pairwise
from .maps import TransportMap, transport_map

__version__ = "0.1.0"
__all__ = ["exact", "exact_batch", "sinkhorn", "sinkhorn_points", "sinkhorn_divergence", "semidual_sgd",
           "semidiscrete_sgd", "wasserstein", "wasserstein_grid", "wasserstein_1d", "sliced_wasserstein",
           "max_sliced_wasserstein", "pairwise", "PairwiseResult", "transport_map", "TransportMap", "cost_matrix",
           "OTResult", "Status", "ConvergenceWarning"]

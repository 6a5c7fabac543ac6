"""Exact optimal transport (network simplex)."""
from .grid import wasserstein_grid
from .multiscale import exact_multiscale
from .network_simplex import exact, exact_batch, exact_points

__all__ = ["exact", "exact_batch", "exact_points", "exact_multiscale", "wasserstein_grid"]

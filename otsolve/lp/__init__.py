"""Exact optimal transport (network simplex)."""
from .network_simplex import exact, exact_batch, exact_points

__all__ = ["exact", "exact_batch", "exact_points"]

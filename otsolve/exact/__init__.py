"""Exact optimal transport (network simplex)."""
from .network_simplex import exact

__all__ = ["exact"]

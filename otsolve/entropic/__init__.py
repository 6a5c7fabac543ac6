"""Entropic optimal transport (log-domain Sinkhorn, divergence, unbalanced)."""
from .divergence import sinkhorn_divergence
from .sinkhorn import sinkhorn, sinkhorn_points

__all__ = ["sinkhorn", "sinkhorn_points", "sinkhorn_divergence"]

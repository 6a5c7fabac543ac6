"""Many problems at once: distance matrices over collections of point clouds."""
from .matrix import PairwiseResult, pairwise

__all__ = ["pairwise", "PairwiseResult"]

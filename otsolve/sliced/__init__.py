"""1-D and sliced Wasserstein distances (sorting, merged cumulative weights)."""
from .oned import wasserstein_1d
from .sliced import max_sliced_wasserstein, sliced_wasserstein

__all__ = ["wasserstein_1d", "sliced_wasserstein", "max_sliced_wasserstein"]

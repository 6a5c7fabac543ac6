"""Semi-dual stochastic optimal transport (Genevay, Cuturi, Peyre & Bach 2016)."""
from .semidiscrete import semidiscrete_sgd
from .sgd import semidual_sgd

__all__ = ["semidual_sgd", "semidiscrete_sgd"]

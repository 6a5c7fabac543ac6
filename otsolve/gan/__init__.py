"""PyTorch adapter: otsolve's solvers as differentiable GAN losses, neural critics, training demos.

The only part of otsolve that imports torch; it needs the optional ``gan`` extra.
"""
try:
    import torch  # noqa: F401
except ImportError as err:  # pragma: no cover - exercised in an environment without torch
    raise ImportError(
        "otsolve.gan needs PyTorch, which is not installed. Install the torch build of your choice "
        "first (CPU or CUDA, see pytorch.org), then the extra: pip install \"otsolve[gan]\""
    ) from err

from .critics import CRITICS, CTransformCritic, Critic, GradientPenaltyCritic, WeightClippingCritic, make_critic, mlp
from .data import DATASETS, Sampler, make_sampler, mode_coverage
from .energy import minibatch_energy_distance
from .losses import METHODS, OTLoss, ot_loss
from .optim import OptimisticAdam, OptimisticSGD
from .quality import QualityResult, generator_quality_study
from .study import StudyResult, critic_error_study
from .train import TrainHistory, TrainResult, train

__all__ = [
    "ot_loss", "OTLoss", "METHODS",
    "Critic", "WeightClippingCritic", "GradientPenaltyCritic", "CTransformCritic", "make_critic", "mlp",
    "CRITICS", "train", "TrainResult", "TrainHistory", "make_sampler", "Sampler", "DATASETS",
    "mode_coverage", "critic_error_study", "StudyResult", "OptimisticAdam", "OptimisticSGD",
    "minibatch_energy_distance", "generator_quality_study", "QualityResult",
]

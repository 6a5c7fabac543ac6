"""Training driver: a small MLP generator trained with an otsolve loss or a neural critic."""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field

import numpy as np
import torch
from tqdm.auto import tqdm

import otsolve

from .._validation import check_choice, check_count, check_positive
from .critics import CRITICS, make_critic, mlp
from .data import Sampler, make_sampler, mode_coverage
from .energy import minibatch_energy_distance
from .losses import ENTROPIC, METHODS, ot_loss
from .optim import OptimisticAdam, OptimisticSGD

LOSSES = METHODS + ("energy",) + CRITICS
DEFAULT_REG = 0.1      # entropic strength when none is given, in cost units (data of unit scale)
GENERATOR_LR = {"wc": 5e-5, "gp": 1e-4, "ctransform": 1e-4}  # each critic paper's rate; OT losses: 1e-3
SOLVER_LR = 1e-3
ENERGY_REG = 0.5       # energy loss: its data-data term W(y, y') between clustered batches took Sinkhorn
                       # 10^4 iterations at reg 0.1 (gaussians8; POT too), 66 at 0.5
OPTIMIZERS = ("adam", "optimistic_adam", "optimistic_sgd")
DEFAULT_BETAS = (0.9, 0.999)  # Adam moments where a method's paper gives none (OT losses, WC): torch's
SINKHORN_TOL = 1e-5    # marginal L1 error: gradients to ~1e-5 relative, ample for SGD on a generator


@dataclass
class TrainHistory:
    """What happened during training.

    ``loss[k]`` is the generator loss at generator step ``step[k]``; ``w1[k]`` is the exact batch W1
    (``otsolve.exact``, cost |x - y|) between ``eval_size`` generated and real samples at
    ``eval_step[k]``; ``modes[k]`` the modes covered then (``gaussians8`` only, else -1);
    ``seconds`` the wall time of the training steps (critic and generator updates, no evaluation).
    """

    step: list = field(default_factory=list)
    loss: list = field(default_factory=list)
    eval_step: list = field(default_factory=list)
    w1: list = field(default_factory=list)
    modes: list = field(default_factory=list)
    seconds: float = 0.0


@dataclass
class TrainResult:
    """The trained ``generator`` (latent (n, latent_dim) -> data (n, dim)), its history, generated
    ``snapshots`` ``[(step, samples)]`` over training, and the paths of the saved ``figures``."""

    generator: torch.nn.Module
    history: TrainHistory
    snapshots: list
    figures: list
    sampler: Sampler
    latent_dim: int

    def sample(self, n, seed=0):
        """n generated samples as a float64 numpy array."""
        g = torch.Generator().manual_seed(seed)
        param = next(self.generator.parameters())
        z = torch.randn(n, self.latent_dim, generator=g).to(param)
        with torch.no_grad():
            return self.generator(z).double().cpu().numpy()


def train(data="gaussians8", loss="sinkhorn_divergence", *, n_steps=1000, batch_size=256, reg=None, p=2,
          latent_dim=None, hidden=(128, 128), lr=None, critic_steps=5, eval_every=None, eval_size=512,
          n_snapshots=5, seed=0, out_dir=None, progress=True, device="cpu", optimizer=None):
    """Train an MLP generator on a built-in data set with any otsolve loss or neural critic.

    Parameters
    ----------
    data : str or Sampler
        ``"gaussians8"`` (ring of 8 Gaussians), ``"digits"`` (scikit-learn 8x8 digits), ... or a
        :class:`Sampler`.
    loss : {"exact", "sinkhorn", "sinkhorn_divergence", "semidual", "energy", "wc", "gp", "ctransform"}
        An :func:`ot_loss` method (cost |x - y|^p), OT-GAN's :func:`minibatch_energy_distance`
        (two generated and two data batches per step) or a critic (W1), trained ``critic_steps``
        times per generator step with its paper's optimiser.
    n_steps, batch_size : int
        Generator steps and minibatch size.
    reg : float, optional
        Entropic strength for the Sinkhorn losses (default 0.1), the energy loss (default 0.5) and the
        semi-dual (default 0).
    lr : float, optional
        Generator learning rate: 1e-3 for OT losses, the critic paper's rate otherwise.
    optimizer : {None, "adam", "optimistic_adam", "optimistic_sgd"}
        Optimiser of the generator and of the critic. None: each method's own (Adam; the WC critic
        and its generator RMSprop). Otherwise that optimiser for both players, with the rates and
        the betas of the defaults (torch's (0.9, 0.999) where the default has none).
    eval_every : int, optional
        Steps between evaluations of the exact batch W1 (default ``n_steps // 20``).
    out_dir : str, optional
        Folder for the figures ``samples.png`` and ``losses.png`` (none saved when omitted).
    progress : bool
        Show a tqdm progress bar.

    Returns
    -------
    TrainResult
    """
    loss = check_choice(loss, "loss", LOSSES)
    if optimizer is not None:
        check_choice(optimizer, "optimizer", OPTIMIZERS)
    sampler = make_sampler(data) if isinstance(data, str) else data
    if not isinstance(sampler, Sampler):
        raise TypeError(f"data must be a data set name or a Sampler; got {type(data).__name__}")
    n_steps, batch_size = check_count(n_steps, "n_steps"), check_count(batch_size, "batch_size")
    critic_steps, eval_size = check_count(critic_steps, "critic_steps"), check_count(eval_size, "eval_size")
    eval_every = max(1, n_steps // 20) if eval_every is None else check_count(eval_every, "eval_every")
    if reg is None and loss in ENTROPIC:
        reg = DEFAULT_REG
    if reg is None and loss == "energy":
        reg = ENERGY_REG
    latent_dim = check_count(latent_dim or (4 if sampler.dim <= 2 else 16), "latent_dim")
    snap_at = set(np.linspace(0, n_steps, max(2, n_snapshots)).round().astype(int).tolist())
    rng, history, snapshots = np.random.default_rng(seed), TrainHistory(), []
    with torch.random.fork_rng(devices=[]):  # reproducible without touching the caller's RNG state
        torch.manual_seed(seed)
        layers = [mlp(latent_dim, sampler.dim, hidden)] + ([torch.nn.Sigmoid()] if sampler.image_shape else [])
        generator = torch.nn.Sequential(*layers).to(device)
        lr = (GENERATOR_LR.get(loss, SOLVER_LR) if lr is None else check_positive(lr, "lr"))
        opt, critic = _optimizers(loss, generator, sampler.dim, lr, device, optimizer)
        z_fixed = torch.randn(eval_size, latent_dim, device=device)
        real_batch = lambda n: torch.as_tensor(sampler.sample(n, rng), dtype=torch.float32, device=device)
        bar = tqdm(range(n_steps + 1), disable=not progress, desc=f"gan {sampler.name} {loss}")
        for step in bar:
            if step % eval_every == 0 or step == n_steps or step in snap_at:
                _evaluate(step, generator, z_fixed, sampler, rng, history, snapshots, snap_at, eval_every, n_steps)
                bar.set_postfix(loss=history.loss[-1] if history.loss else float("nan"), w1=history.w1[-1])
            if step == n_steps:
                break
            start = time.perf_counter()
            if critic is not None:
                for _ in range(critic_steps):
                    with torch.no_grad():
                        fake = generator(torch.randn(batch_size, latent_dim, device=device))
                    critic.step(fake, real_batch(batch_size))
            fake = generator(torch.randn(batch_size, latent_dim, device=device))
            if loss == "energy":
                fake2 = generator(torch.randn(batch_size, latent_dim, device=device))
                value = minibatch_energy_distance(fake, fake2, real_batch(batch_size), real_batch(batch_size),
                                                  reg=reg, p=p, tol=SINKHORN_TOL)
            elif critic is None:
                value = ot_loss(fake, real_batch(batch_size), method=loss, p=p,
                                reg=None if loss == "exact" else reg, **_solver_options(loss, seed + step))
            else:
                value = critic.generator_loss(fake)
            opt.zero_grad(set_to_none=True)
            value.backward()
            opt.step()
            history.seconds += time.perf_counter() - start
            history.step.append(step)
            history.loss.append(float(value.detach()))
    figures = save_figures(history, snapshots, sampler, loss, out_dir) if out_dir else []
    return TrainResult(generator, history, snapshots, figures, sampler, latent_dim)


def _solver_options(loss, seed):
    if loss in ENTROPIC:
        return {"tol": SINKHORN_TOL}
    return {"seed": seed} if loss == "semidual" else {}


def _optimizers(loss, generator, dim, lr, device, optimizer=None):
    """The generator's optimiser and the critic (None for OT losses), with ``optimizer``'s kind."""
    critic = make_critic(loss, mlp(dim, 1, (128, 128, 128)).to(device)) if loss in CRITICS else None
    betas = getattr(critic, "betas", DEFAULT_BETAS)
    if critic is not None and optimizer is not None:
        critic.optimizer = make_optimizer(optimizer, critic.net.parameters(), critic.lr, betas)
    if optimizer is None:
        optimizer = "rmsprop" if loss == "wc" else "adam"
    return make_optimizer(optimizer, generator.parameters(), lr, betas), critic


def make_optimizer(kind, params, lr, betas=DEFAULT_BETAS):
    """A torch optimiser by name: "adam", "optimistic_adam", "optimistic_sgd" (or "rmsprop")."""
    if kind == "adam":
        return torch.optim.Adam(params, lr=lr, betas=betas)
    if kind == "optimistic_adam":
        return OptimisticAdam(params, lr=lr, betas=betas)
    if kind == "optimistic_sgd":
        return OptimisticSGD(params, lr=lr)
    return torch.optim.RMSprop(params, lr=lr)


def _evaluate(step, generator, z_fixed, sampler, rng, history, snapshots, snap_at, eval_every, n_steps):
    with torch.no_grad():
        fake = generator(z_fixed).double().cpu().numpy()
    real = sampler.sample(len(fake), rng)
    if step % eval_every == 0 or step == n_steps:
        history.eval_step.append(step)
        history.w1.append(otsolve.exact(otsolve.cost_matrix(fake, real, p=1)).value)
        history.modes.append(mode_coverage(fake, sampler.centers)[0] if sampler.centers is not None else -1)
    if step in snap_at:
        snapshots.append((step, fake))


def save_figures(history, snapshots, sampler, loss, out_dir):
    """Save ``samples.png`` (generated samples over training) and ``losses.png`` into ``out_dir``."""
    from matplotlib.figure import Figure  # no pyplot: no global state, any backend

    os.makedirs(out_dir, exist_ok=True)
    k = len(snapshots)
    fig = Figure(figsize=(2.6 * k, 2.8), layout="constrained")
    axes = fig.subplots(1, k, squeeze=False)[0]
    real = sampler.sample(2000 if sampler.image_shape is None else 36, np.random.default_rng(1))
    for ax, (step, fake) in zip(axes, snapshots):
        if sampler.image_shape is None:
            ax.scatter(real[:, 0], real[:, 1], s=2, c="0.75", label="data")
            ax.scatter(fake[:, 0], fake[:, 1], s=2, c="C3", label="generated")
            ax.set_aspect("equal")
        else:
            ax.imshow(_image_grid(fake[:36], sampler.image_shape), cmap="gray_r", vmin=0, vmax=1)
            ax.set_xticks([]), ax.set_yticks([])
        ax.set_title(f"step {step}")
    fig.suptitle(f"{sampler.name}: generator trained with {loss}")
    samples_path = os.path.join(out_dir, "samples.png")
    fig.savefig(samples_path, dpi=90)
    fig = Figure(figsize=(8, 3), layout="constrained")
    ax1, ax2 = fig.subplots(1, 2)
    ax1.plot(history.step, history.loss, lw=0.8)
    ax1.set_xlabel("generator step"), ax1.set_ylabel(f"{loss} loss")
    ax2.plot(history.eval_step, history.w1, marker=".")
    ax2.set_xlabel("generator step"), ax2.set_ylabel("exact batch W1 (otsolve.exact)")
    losses_path = os.path.join(out_dir, "losses.png")
    fig.savefig(losses_path, dpi=90)
    return [samples_path, losses_path]


def _image_grid(images, shape, cols=6):
    rows = int(np.ceil(len(images) / cols))
    grid = np.ones((rows * (shape[0] + 1), cols * (shape[1] + 1)))
    for k, img in enumerate(images):
        r, c = divmod(k, cols)
        grid[r * (shape[0] + 1):r * (shape[0] + 1) + shape[0], c * (shape[1] + 1):c * (shape[1] + 1) + shape[1]] = \
            np.clip(img.reshape(shape), 0, 1)
    return grid

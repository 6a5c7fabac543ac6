"""Which critic or OT loss trains the best generator: the same generator, budget and data for each
loss (WC, GP, c-transform critics; exact, Sinkhorn divergence, semi-dual and energy losses) and
optimiser (Adam, optimistic Adam), judged by the exact W1 and W2 between generated and held-out data.

The seed poster (Mallasto, Montufar, Gerolin, Figure 3) remarks that the c-transform critic, although
by far the best estimate of the batch W1, does not train the best generator.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

import otsolve

from .._validation import check_choice, check_count
from .critics import CRITICS
from .data import Sampler, _digits, make_sampler, mode_coverage
from .train import LOSSES, OPTIMIZERS, _image_grid, train

DATA = ("gaussians8", "digits")
STUDY_LOSSES = CRITICS + ("exact", "sinkhorn_divergence", "semidual", "energy")
STUDY_OPTIMIZERS = ("adam", "optimistic_adam")
HELD_OUT_DIGITS = 500  # of the 1797 scikit-learn digits, never sampled in training


@dataclass
class QualityRow:
    """One (data, loss, optimiser) run: exact ``w1``, ``w2`` between ``eval_size`` generated points and
    the held-out data at the end; ``modes``/``in_mode`` (gaussians8; else -1/nan); ``step_seconds``
    per generator step (critic steps included); ``eval_step``, ``w1_curve`` over training (exact
    batch W1 between ``eval_size`` generated and fresh training samples); ``samples`` for the grid."""

    data: str
    loss: str
    optimizer: str
    w1: float
    w2: float
    modes: int
    in_mode: float
    step_seconds: float
    eval_step: np.ndarray
    w1_curve: np.ndarray
    samples: np.ndarray = field(repr=False)


@dataclass
class QualityResult:
    rows: list
    config: dict

    def row(self, data, loss, optimizer):
        return next(r for r in self.rows if (r.data, r.loss, r.optimizer) == (data, loss, optimizer))

    def table(self):
        """A markdown table: one line per run."""
        lines = ["| data | loss | optimiser | W1 (held out) | W2 (held out) | modes (of 8) | in a mode | "
                 "W1 over training | ms per step |", "|---" * 9 + "|"]
        for r in self.rows:
            modes = f"{r.modes}" if r.modes >= 0 else "-"
            in_mode = f"{r.in_mode:.2f}" if r.modes >= 0 else "-"
            curve = " ".join(f"{w:.2f}" for w in r.w1_curve)
            lines.append(f"| {r.data} | {r.loss} | {r.optimizer} | {r.w1:.3f} | {r.w2:.3f} | {modes} | "
                         f"{in_mode} | {curve} | {1e3 * r.step_seconds:.1f} |")
        return "\n".join(lines)

    def save_figure(self, path):
        """A grid of final samples: one panel per run (rows: data and optimiser, columns: loss)."""
        from matplotlib.figure import Figure

        keys = list(dict.fromkeys((r.data, r.optimizer) for r in self.rows))
        losses = list(dict.fromkeys(r.loss for r in self.rows))
        fig = Figure(figsize=(2.2 * len(losses), 2.3 * len(keys)), layout="constrained")
        axes = fig.subplots(len(keys), len(losses), squeeze=False)
        for (k, (data, opt)), (j, loss) in ((a, b) for a in enumerate(keys) for b in enumerate(losses)):
            ax = axes[k, j]
            ax.set_xticks([]), ax.set_yticks([])
            try:
                r = self.row(data, loss, opt)
            except StopIteration:
                continue
            if r.samples.shape[1] == 2:
                ax.scatter(r.samples[:, 0], r.samples[:, 1], s=1, c="C3")
                ax.set_xlim(-3, 3), ax.set_ylim(-3, 3), ax.set_aspect("equal")
            else:
                ax.imshow(_image_grid(r.samples[:25], (8, 8), cols=5), cmap="gray_r", vmin=0, vmax=1)
            ax.set_title(f"{loss} / {opt}\nW1 {r.w1:.3f}", fontsize=8)
        fig.savefig(path, dpi=80)
        return path


def generator_quality_study(data=DATA, losses=STUDY_LOSSES, optimizers=STUDY_OPTIMIZERS, *, n_steps=1000,
                            batch_size=128, eval_size=2000, n_evals=5, critic_steps=5, seed=0, progress=False):
    """Train one generator per (data, loss, optimiser) under the same budget; returns a
    :class:`QualityResult` (``.table()``, ``.save_figure()``).

    Every run has the same generator architecture, initial weights (seed), ``n_steps`` generator
    steps of ``batch_size`` and the default rates of :func:`train` (critics: ``critic_steps`` critic
    updates per generator step). At the end ``eval_size`` generated points are compared with held-out
    data by the exact W1 and W2 (``otsolve.wasserstein``): fresh gaussians8 samples, or the
    ``HELD_OUT_DIGITS`` digits kept out of training (so W1 there is against 500 points).
    """
    data = [check_choice(d, "data", DATA) for d in data]
    losses = [check_choice(loss, "loss", LOSSES) for loss in losses]
    optimizers = [check_choice(o, "optimizer", OPTIMIZERS) for o in optimizers]
    n_steps, eval_size = check_count(n_steps, "n_steps"), check_count(eval_size, "eval_size")
    n_evals = check_count(n_evals, "n_evals")
    rows = []
    for d in data:
        sampler, held_out = _split(d, eval_size, seed)
        for loss in losses:
            for opt in optimizers:
                rows.append(_run(d, sampler, held_out, loss, opt, n_steps, batch_size, eval_size, n_evals,
                                 critic_steps, seed, progress))
    config = dict(data=data, losses=losses, optimizers=optimizers, n_steps=n_steps, batch_size=batch_size,
                  eval_size=eval_size, critic_steps=critic_steps, seed=seed)
    return QualityResult(rows, config)


def _run(d, sampler, held_out, loss, opt, n_steps, batch_size, eval_size, n_evals, critic_steps, seed, progress):
    res = train(sampler, loss, n_steps=n_steps, batch_size=batch_size, eval_every=max(1, n_steps // n_evals),
                eval_size=min(eval_size, 512), critic_steps=critic_steps, n_snapshots=2, seed=seed,
                progress=progress, optimizer=opt)
    fake = res.sample(eval_size, seed=seed + 1)
    w1 = otsolve.wasserstein(fake, held_out, p=1).value
    w2 = otsolve.wasserstein(fake, held_out, p=2).value
    modes, in_mode = mode_coverage(fake, sampler.centers) if sampler.centers is not None else (-1, float("nan"))
    return QualityRow(d, loss, opt, w1, w2, modes, in_mode, res.history.seconds / n_steps,
                      np.array(res.history.eval_step), np.array(res.history.w1), fake[:500])


def _split(name, eval_size, seed):
    """The training sampler and the held-out data of a data set."""
    if name == "gaussians8":
        sampler = make_sampler(name)
        return sampler, sampler.sample(eval_size, np.random.default_rng([seed, 7]))
    images = _digits(None)
    order = np.random.default_rng([seed, 7]).permutation(len(images))
    train_images, held_out = images[order[HELD_OUT_DIGITS:]], images[order[:HELD_OUT_DIGITS]]
    draw = lambda n, rng: train_images[rng.integers(0, len(train_images), size=n)]  # noqa: E731
    return Sampler("digits", 64, draw, image_shape=(8, 8)), held_out


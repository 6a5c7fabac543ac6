"""The critic-error study of the seed poster (Mallasto, Montufar, Gerolin, "Approximating the
Wasserstein Metric in GANs", Table 1 and Figure 2), plus otsolve's solvers as direct estimators.

Protocol: train each critic for ``n_train`` minibatches of ``batch_size`` fake/real samples, stop,
then compare its batch W1 estimate with the exact batch W1 (``otsolve.exact``, cost |x - y|) on
``n_eval`` fresh batch pairs; report the mean absolute error of each repetition, then the mean and
std over ``n_reps`` repetitions. Solvers need no training: they estimate each batch pair directly.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch
from tqdm.auto import tqdm

import otsolve

from .._validation import check_choice, check_count, check_positive
from .critics import CRITICS, make_critic, mlp
from .data import make_sampler
from .losses import METHODS, ot_loss

SETTINGS = {  # setting -> (fake distribution mu, real distribution nu, description)
    "gaussians": ("gaussians+", "gaussians-", "N(+[1,1], I) vs N(-[1,1], I) in 2-D"),
    "digits": ("digits0-4", "digits5-9", "sklearn digits: classes 0-4 vs 5-9, pixels in [0,1]"),
}
SOLVERS = ("exact", "sinkhorn_divergence", "semidual")
LABELS = {"wc": "WC", "gp": "GP", "ctransform": "c-transform", "exact": "exact (otsolve.exact)",
          "sinkhorn_divergence": "Sinkhorn divergence", "semidual": "semi-dual SGD"}
DEFAULT_REG = 0.05  # Sinkhorn divergence on cost |x - y|: both settings have batch W1 of about 3
SINKHORN_TOL = 1e-6  # marginal L1 error of each Sinkhorn solve: far below the errors compared here


@dataclass
class StudyRow:
    """One method in one setting: ``errors[r]`` is the mean |estimate - exact batch W1| over the
    evaluation pairs of repetition r; ``bias`` the mean signed error; times in seconds per step
    (a critic update, or a solver loss forward + backward) and per estimate."""

    setting: str
    method: str
    errors: np.ndarray
    bias: float
    step_seconds: float
    estimate_seconds: float

    @property
    def mean(self):
        return float(np.mean(self.errors))

    @property
    def std(self):
        return float(np.std(self.errors))


@dataclass
class StudyResult:
    """Rows of the table, ground-truth scale per setting, and training curves of repetition 0:
    ``curves[(setting, method)] = (truth, estimate)`` over the ``n_train`` training batches."""

    rows: list
    truth_mean: dict
    curves: dict = field(default_factory=dict)
    config: dict = field(default_factory=dict)

    def row(self, setting, method):
        return next(r for r in self.rows if r.setting == setting and r.method == method)

    def table(self):
        """A markdown table like the poster's Table 1, with solver rows and costs per step."""
        settings = list(self.truth_mean)
        methods = list(dict.fromkeys(r.method for r in self.rows))
        head = "| error (mean ± std over reps) | " + " | ".join(
            f"{s} (batch W1 ≈ {self.truth_mean[s]:.2f})" for s in settings) + " | ms per step | ms per estimate |"
        lines = [head, "|---" * (len(settings) + 3) + "|"]
        for m in methods:
            cells = [f"{self.row(s, m).mean:.3f} ± {self.row(s, m).std:.3f}" for s in settings]
            step = " / ".join(f"{1e3 * self.row(s, m).step_seconds:.2f}" for s in settings)
            est = " / ".join(f"{1e3 * self.row(s, m).estimate_seconds:.2f}" for s in settings)
            lines.append(f"| {LABELS.get(m, m)} | " + " | ".join(cells) + f" | {step} | {est} |")
        return "\n".join(lines)

    def save_figure(self, path):
        """Estimate vs exact batch W1 over the training batches of repetition 0 (poster, Figure 2)."""
        from matplotlib.figure import Figure

        settings = list(self.truth_mean)
        fig = Figure(figsize=(5.5 * len(settings), 3.6), layout="constrained")
        axes = fig.subplots(1, len(settings), squeeze=False)[0]
        for ax, s in zip(axes, settings):
            truth_drawn = False
            for k, m in enumerate(CRITICS):
                if (s, m) not in self.curves:
                    continue
                truth, est = self.curves[(s, m)]
                if not truth_drawn:
                    ax.plot(truth, c="k", lw=0.8, label="exact batch W1")
                    truth_drawn = True
                ax.plot(est, c=f"C{k}", lw=0.8, label=LABELS[m])
            ax.set_title(f"{s}: {SETTINGS[s][2]}", fontsize=9)
            ax.set_xlabel("critic training minibatch"), ax.set_ylabel("batch W1 / estimate")
            ax.legend(fontsize=8)
        fig.savefig(path, dpi=90)
        return path


def critic_error_study(settings=("gaussians", "digits"), methods=CRITICS + SOLVERS, *, n_reps=20, n_train=500,
                       batch_size=64, n_eval=20, reg=DEFAULT_REG, hidden=(128, 128, 128), seed=0, progress=False):
    """Run the critic-error study; returns a :class:`StudyResult` (``.table()``, ``.save_figure()``).

    Parameters
    ----------
    settings : sequence of {"gaussians", "digits"}
    methods : sequence of {"wc", "gp", "ctransform", "exact", "sinkhorn_divergence", "semidual"}
    n_reps, n_train, batch_size, n_eval : int
        Repetitions, critic training minibatches, minibatch size, fresh evaluation pairs.
    reg : float
        Entropic strength of the Sinkhorn divergence row (cost units; the semi-dual row uses reg=0).
    hidden : tuple of int
        Hidden widths of the critics' MLP (ReLU).
    """
    settings = [check_choice(s, "setting", tuple(SETTINGS)) for s in settings]
    methods = [check_choice(m, "method", CRITICS + METHODS) for m in methods]
    n_reps, n_train = check_count(n_reps, "n_reps"), check_count(n_train, "n_train", minimum=0)
    batch_size, n_eval = check_count(batch_size, "batch_size"), check_count(n_eval, "n_eval")
    reg = check_positive(reg, "reg")
    rows, truth_mean, curves = [], {}, {}
    for s in settings:
        mu, nu = make_sampler(SETTINGS[s][0]), make_sampler(SETTINGS[s][1])
        stats = {m: ([], [], [], []) for m in methods}  # errors, signed errors, step s, estimate s
        truths = []
        for rep in tqdm(range(n_reps), disable=not progress, desc=f"critic error: {s}"):
            eval_rng = np.random.default_rng([seed, rep, 1])
            pairs = [(_tensor(mu.sample(batch_size, eval_rng)), _tensor(nu.sample(batch_size, eval_rng)))
                     for _ in range(n_eval)]
            truth = np.array([exact_w1(x, y) for x, y in pairs])
            truths.append(truth.mean())
            for m in methods:
                estimate, step_s, curve = _run_method(m, mu, nu, pairs, n_train, batch_size, reg, hidden,
                                                      seed=[seed, rep, 2], record=rep == 0)
                if curve is not None:
                    curves[(s, m)] = curve
                errs, signed, steps, ests = stats[m]
                errs.append(np.abs(estimate[0] - truth).mean())
                signed.append((estimate[0] - truth).mean())
                steps.append(step_s)
                ests.append(estimate[1])
        truth_mean[s] = float(np.mean(truths))
        for m in methods:
            errs, signed, steps, ests = stats[m]
            rows.append(StudyRow(s, m, np.array(errs), float(np.mean(signed)), float(np.median(steps)),
                                 float(np.median(ests))))
    config = dict(settings=settings, n_reps=n_reps, n_train=n_train, batch_size=batch_size, n_eval=n_eval,
                  reg=reg, hidden=tuple(hidden), seed=seed, threads=torch.get_num_threads())
    return StudyResult(rows, truth_mean, curves, config)


def exact_w1(x, y):
    """Exact batch W1 (uniform weights, cost |x - y|) by ``otsolve.exact``: the ground truth."""
    return otsolve.exact(otsolve.cost_matrix(x.double().numpy(), y.double().numpy(), p=1)).value


def _run_method(method, mu, nu, pairs, n_train, batch_size, reg, hidden, seed, record):
    """((estimates on the pairs, seconds per estimate), seconds per step, training curve or None)."""
    if method in CRITICS:
        return _run_critic(method, mu, nu, pairs, n_train, batch_size, hidden, seed, record)
    options = {"reg": reg, "tol": SINKHORN_TOL} if method == "sinkhorn_divergence" else {}
    if method == "semidual":
        options = {"reg": 0.0, "seed": int(np.random.default_rng(seed).integers(2**31))}
    est, step_times, est_times = [], [], []
    for x, y in pairs:
        start = time.perf_counter()
        value = float(ot_loss(x, y, method=method, p=1, **options))
        est_times.append(time.perf_counter() - start)
        est.append(value)
        xg = x.clone().requires_grad_(True)
        start = time.perf_counter()
        ot_loss(xg, y, method=method, p=1, **options).backward()
        step_times.append(time.perf_counter() - start)
    return (np.array(est), float(np.median(est_times))), float(np.median(step_times)), None


def _run_critic(kind, mu, nu, pairs, n_train, batch_size, hidden, seed, record):
    rng = np.random.default_rng(seed)  # every critic of a repetition sees the same training batches
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(rng.integers(2**31)))
        critic = make_critic(kind, mlp(mu.dim, 1, hidden))
        times, truth, curve = [], [], []
        for _ in range(n_train):
            fake, real = _tensor(mu.sample(batch_size, rng)), _tensor(nu.sample(batch_size, rng))
            start = time.perf_counter()
            critic.step(fake, real)
            times.append(time.perf_counter() - start)
            if record:
                truth.append(exact_w1(fake, real))
                curve.append(critic.estimate(fake, real))
        est, est_times = [], []
        for x, y in pairs:
            start = time.perf_counter()
            est.append(critic.estimate(x, y))
            est_times.append(time.perf_counter() - start)
    step_s = float(np.median(times)) if times else float("nan")
    curves = (np.array(truth), np.array(curve)) if record else None
    return (np.array(est), float(np.median(est_times))), step_s, curves


def _tensor(arr):
    return torch.as_tensor(arr, dtype=torch.float32)

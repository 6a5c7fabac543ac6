"""The ``otsolve`` command line. ``otsolve`` alone runs the demo: exact W2 between two clouds."""
from __future__ import annotations

import argparse
import sys
import time

import numpy as np


def demo_clouds(n: int, seed: int = 0):
    """Two 2-D Gaussian clouds of n points: standard, and shifted by (2, 1) and stretched."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 2))
    y = rng.normal(size=(n, 2)) * np.array([1.5, 0.5]) + np.array([2.0, 1.0])
    return x, y


def _run_demo(args) -> int:
    from . import wasserstein

    x, y = demo_clouds(args.n, args.seed)
    print(f"exact W{args.p:g} between two 2-D Gaussian clouds of {args.n} points (seed {args.seed})")
    start = time.perf_counter()
    wasserstein(x[:5], y[:5], p=args.p)  # Numba compilation (first run on a machine) or cache load
    warm_up = time.perf_counter() - start
    start = time.perf_counter()
    res = wasserstein(x, y, p=args.p, method="exact")
    elapsed = time.perf_counter() - start
    name = f"W{args.p:g}"
    print(f"  {name:<17} = {res.value:.12g}")
    print(f"  transport cost    = {res.value_linear:.12g}")
    print(f"  time              = {elapsed:.3f} s (plus {warm_up:.1f} s of Numba compilation or cache load)")
    print(f"  status            = {res.status}, {res.n_iter} pivots")
    print("  certificate:")
    print(f"    duality gap     = {res.duality_gap:.3e}   (value - (a.f + b.g))")
    print(f"    dual violation  = {res.max_dual_violation:.3e}   (max f_i + g_j - C_ij)")
    print(f"    marginal error  = {res.marginal_error:.3e}")
    return 0 if res.success else 1


def _run_gan(args) -> int:
    from .gan import train  # lazily: torch only when this command runs

    res = train(args.data, args.loss, n_steps=args.steps, batch_size=args.batch_size, reg=args.reg, p=args.p,
                lr=args.lr, seed=args.seed, out_dir=args.out, progress=args.progress, optimizer=args.optimizer)
    h = res.history
    print(f"trained a generator on {args.data} with the {args.loss} loss for {args.steps} steps")
    print(f"  exact batch W1 (otsolve.exact): {h.w1[0]:.4f} at step 0 -> {h.w1[-1]:.4f} at step {h.eval_step[-1]}")
    if h.modes[-1] >= 0:
        print(f"  modes covered: {h.modes[-1]} of 8")
    for path in res.figures:
        print(f"  saved {path}")
    return 0


def _run_critic_error(args) -> int:
    from .gan import critic_error_study  # lazily: torch only when this command runs

    res = critic_error_study(args.settings, args.methods, n_reps=args.reps, n_train=args.steps,
                             batch_size=args.batch_size, n_eval=args.eval_batches, reg=args.reg, seed=args.seed,
                             progress=args.progress)
    print(res.table())
    if args.figure:
        print(f"saved {res.save_figure(args.figure)}")
    return 0


def _run_gan_study(args) -> int:
    from .gan import generator_quality_study  # lazily: torch only when this command runs

    res = generator_quality_study(args.data, args.losses, args.optimizers, n_steps=args.steps,
                                  batch_size=args.batch_size, eval_size=args.eval_size, seed=args.seed,
                                  progress=args.progress)
    print(res.table())
    if args.figure:
        print(f"saved {res.save_figure(args.figure)}")
    return 0


def _add_gan_commands(commands) -> None:
    gan = commands.add_parser("gan", help="train a small GAN generator with an otsolve loss or a critic")
    gan.add_argument("--data", default="gaussians8", help="gaussians8 or digits (default gaussians8)")
    gan.add_argument("--loss", default="sinkhorn_divergence",
                     help="exact, sinkhorn, sinkhorn_divergence, semidual, energy, wc, gp or ctransform")
    gan.add_argument("--steps", type=int, default=1000)
    gan.add_argument("--batch-size", type=int, default=256)
    gan.add_argument("--reg", type=float, default=None, help="entropic strength (default 0.1 for Sinkhorn)")
    gan.add_argument("--p", type=int, default=2, help="cost |x - y|^p of the solver losses, 1 or 2")
    gan.add_argument("--lr", type=float, default=None)
    gan.add_argument("--optimizer", default=None,
                     help="adam, optimistic_adam or optimistic_sgd (default: each method's own)")
    gan.add_argument("--seed", type=int, default=0)
    gan.add_argument("--out", default="gan_out", help="folder for samples.png and losses.png")
    gan.add_argument("--no-progress", dest="progress", action="store_false")
    gan.set_defaults(run=_run_gan)
    study = commands.add_parser("critic-error", help="the critic-error study (WC, GP, c-transform vs exact W1)")
    study.add_argument("--settings", nargs="+", default=["gaussians", "digits"])
    study.add_argument("--methods", nargs="+",
                       default=["wc", "gp", "ctransform", "exact", "sinkhorn_divergence", "semidual"])
    study.add_argument("--reps", type=int, default=20)
    study.add_argument("--steps", type=int, default=500, help="critic training minibatches (default 500)")
    study.add_argument("--batch-size", type=int, default=64)
    study.add_argument("--eval-batches", type=int, default=20)
    study.add_argument("--reg", type=float, default=0.05, help="reg of the Sinkhorn divergence row")
    study.add_argument("--seed", type=int, default=0)
    study.add_argument("--figure", default="critic_error.png")
    study.add_argument("--progress", action="store_true")
    study.set_defaults(run=_run_critic_error)
    quality = commands.add_parser("gan-study", help="which critic or OT loss trains the best generator")
    quality.add_argument("--data", nargs="+", default=["gaussians8", "digits"])
    quality.add_argument("--losses", nargs="+",
                         default=["wc", "gp", "ctransform", "exact", "sinkhorn_divergence", "semidual", "energy"])
    quality.add_argument("--optimizers", nargs="+", default=["adam", "optimistic_adam"])
    quality.add_argument("--steps", type=int, default=1000, help="generator steps per run (default 1000)")
    quality.add_argument("--batch-size", type=int, default=128)
    quality.add_argument("--eval-size", type=int, default=2000, help="generated points compared at the end")
    quality.add_argument("--seed", type=int, default=0)
    quality.add_argument("--figure", default="gan_quality.png")
    quality.add_argument("--progress", action="store_true")
    quality.set_defaults(run=_run_gan_study)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="otsolve", description=__doc__)
    commands = parser.add_subparsers(dest="command")
    demo = commands.add_parser("demo", help="exact Wasserstein distance on built-in demo clouds (default)")
    for p in (parser, demo):
        p.add_argument("--n", type=int, default=3000, help="points per cloud (default 3000)")
        p.add_argument("--p", type=float, default=2.0, help="order of W_p (default 2)")
        p.add_argument("--seed", type=int, default=0)
    _add_gan_commands(commands)
    parser.set_defaults(run=_run_demo)
    demo.set_defaults(run=_run_demo)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())

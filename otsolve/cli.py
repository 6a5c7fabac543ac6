"""The ``otsolve`` command line. ``otsolve`` alone runs the demo: exact W2 between two clouds."""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
import warnings

import numpy as np

from ._result import ConvergenceWarning

DISTANCE_METHODS = ("exact", "sinkhorn", "sliced")


def demo_clouds(n: int, seed: int = 0, m: int | None = None):
    """Two 2-D Gaussian clouds of n and m (default n) points: standard, and shifted by (2, 1) and
    stretched (also the benchmarks' data)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 2))
    y = rng.normal(size=(n if m is None else m, 2)) * np.array([1.5, 0.5]) + np.array([2.0, 1.0])
    return x, y


def _run_demo(args) -> int:
    from . import wasserstein
    from .wasserstein import MULTISCALE_MIN_PAIRS

    x, y = demo_clouds(args.n, args.seed)
    print(f"exact W{args.p:g} between two 2-D Gaussian clouds of {args.n} points (seed {args.seed})")
    start = time.perf_counter()
    big = args.n * args.n > MULTISCALE_MIN_PAIRS  # the solver the full run will take, compiled here
    wasserstein(x[:300], y[:300], p=args.p, multiscale=big)  # Numba compilation or cache load
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


def load_points(path: str, name: str) -> np.ndarray:
    """A point cloud (or weights) from ``.npy`` or from ``.csv`` / ``.txt`` (one point a row,
    comma- or whitespace-separated); ValueError naming ``name`` if it cannot be read."""
    if not os.path.isfile(path):
        raise ValueError(f"{name}: {path!r} is not a file" if os.path.exists(path) else
                         f"{name}: no such file {path!r}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # numpy warns (not raises) on an empty text file
            if path.endswith(".npy"):
                arr = np.load(path, allow_pickle=False)
            else:
                with open(path) as fh:
                    first = fh.readline()
                arr = np.loadtxt(path, delimiter="," if "," in first else None, ndmin=1)
    except (OSError, ValueError, UnicodeDecodeError, UserWarning) as err:
        raise ValueError(f"{name}: cannot read {path!r} as numbers ({str(err).splitlines()[0]})") from None
    if arr.ndim == 0 or arr.size == 0:
        raise ValueError(f"{name}: {path!r} holds no points (shape {arr.shape}); one point a row")
    return arr


def _load_weights(path, name, count):
    """Weights from a file, one a row, normalised to mass 1 (files rarely sum to one exactly)."""
    if path is None:
        return None
    w = np.asarray(load_points(path, name), dtype=float)
    if w.ndim != 1 or len(w) != count:
        raise ValueError(f"{name}: {path!r} holds {w.shape} values; need {count}, one a row (one per point)")
    if not (np.isfinite(w).all() and (w >= 0).all() and w.sum() > 0):
        raise ValueError(f"{name}: weights must be finite, >= 0 and not all zero")
    return w / w.sum()


def _run_distance(args) -> int:
    from . import wasserstein

    x, y = load_points(args.X, "X"), load_points(args.Y, "Y")
    a = _load_weights(args.weights_x, "--weights-x", len(x))
    b = _load_weights(args.weights_y, "--weights-y", len(y))
    if args.method == "sinkhorn" and args.reg is None:
        raise ValueError("--reg is required with --method sinkhorn (entropic strength in cost units)")
    if args.method != "sinkhorn" and args.reg is not None:
        raise ValueError(f"--reg applies to --method sinkhorn only, not {args.method}")
    start = time.perf_counter()
    if args.method == "sliced":
        from . import sliced_wasserstein
        value = sliced_wasserstein(x, y, a, b, p=args.p, seed=0)
        report = dict(value=value, status="optimal", seconds=time.perf_counter() - start)
    else:
        options = {} if args.reg is None else dict(reg=args.reg)
        res = wasserstein(x, y, a, b, p=args.p, metric=args.metric, method=args.method, **options)
        report = dict(value=res.value, transport_cost=res.value_linear, status=str(res.status),
                      duality_gap=res.duality_gap, max_dual_violation=res.max_dual_violation,
                      marginal_error=res.marginal_error, n_iter=res.n_iter,
                      seconds=time.perf_counter() - start, message=res.message)
    report.update(method=args.method, p=args.p, metric=args.metric, n=len(x), m=len(y))
    if args.json:
        print(json.dumps({k: (None if isinstance(v, float) and not math.isfinite(v) else v)
                          for k, v in report.items()}))
    else:
        print(f"W{args.p:g} ({args.method}, {args.metric}) between {args.X} ({len(x)} points) "
              f"and {args.Y} ({len(y)} points) = {report['value']:.12g}")
        for key in ("transport_cost", "status", "n_iter", "duality_gap", "max_dual_violation",
                    "marginal_error", "seconds"):
            if key in report:
                v = report[key]
                print(f"  {key:<18} = {v:.6g}" if isinstance(v, float) else f"  {key:<18} = {v}")
    return 0 if report["status"] == "optimal" else 1


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
    gan.add_argument("--steps", type=_positive(int, "--steps"), default=1000)
    gan.add_argument("--batch-size", type=_positive(int, "--batch-size"), default=256)
    gan.add_argument("--reg", type=_positive(float, "--reg"), default=None, help="entropic strength (default 0.1 for Sinkhorn)")
    gan.add_argument("--p", type=int, choices=[1, 2], default=2, help="cost |x - y|^p of the solver losses, 1 or 2")
    gan.add_argument("--lr", type=_positive(float, "--lr"), default=None)
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
    study.add_argument("--reps", type=_positive(int, "--reps"), default=20)
    study.add_argument("--steps", type=_positive(int, "--steps"), default=500, help="critic training minibatches (default 500)")
    study.add_argument("--batch-size", type=_positive(int, "--batch-size"), default=64)
    study.add_argument("--eval-batches", type=_positive(int, "--eval-batches"), default=20)
    study.add_argument("--reg", type=_positive(float, "--reg"), default=0.05, help="reg of the Sinkhorn divergence row")
    study.add_argument("--seed", type=int, default=0)
    study.add_argument("--figure", default="critic_error.png")
    study.add_argument("--progress", action="store_true")
    study.set_defaults(run=_run_critic_error)
    quality = commands.add_parser("gan-study", help="which critic or OT loss trains the best generator")
    quality.add_argument("--data", nargs="+", default=["gaussians8", "digits"])
    quality.add_argument("--losses", nargs="+",
                         default=["wc", "gp", "ctransform", "exact", "sinkhorn_divergence", "semidual", "energy"])
    quality.add_argument("--optimizers", nargs="+", default=["adam", "optimistic_adam"])
    quality.add_argument("--steps", type=_positive(int, "--steps"), default=1000,
                         help="generator steps per run (default 1000)")
    quality.add_argument("--batch-size", type=_positive(int, "--batch-size"), default=128)
    quality.add_argument("--eval-size", type=_positive(int, "--eval-size"), default=2000,
                         help="generated points compared at the end")
    quality.add_argument("--seed", type=int, default=0)
    quality.add_argument("--figure", default="gan_quality.png")
    quality.add_argument("--progress", action="store_true")
    quality.set_defaults(run=_run_gan_study)


def _run_pairwise(args) -> int:
    from . import pairwise

    clouds = [load_points(f, f"FILES[{k}]") for k, f in enumerate(args.files)]
    client = None
    if args.scheduler:
        try:
            from distributed import Client  # lazily: the dask extra only when asked for
        except ImportError:
            raise ValueError("--scheduler needs dask.distributed: pip install 'otsolve[dask]'") from None
        client = Client(args.scheduler)
    options = {"reg": args.reg} if args.reg is not None else {}
    if args.method == "sliced":
        options.update(n_projections=args.n_projections, seed=args.seed)
    try:
        res = pairwise(clouds, p=args.p, method=args.method, client=client, progress=args.progress,
                       store=args.store, **options)
    finally:
        if client is not None:
            client.close()
    np.save(args.out, res.distances)
    print(f"{args.method} W{args.p:g} between {len(clouds)} clouds ({len(clouds) * (len(clouds) - 1) // 2} pairs) "
          f"in {res.seconds:.2f} s{' on ' + args.scheduler if args.scheduler else ''}: saved {args.out}")
    for i, j, message in res.failures:
        print(f"  pair ({i}, {j}) not optimal: {message}")
    return 0 if res.success else 1


def _add_pairwise_command(commands) -> None:
    cmd = commands.add_parser("pairwise", help="the K x K matrix of W_p between point clouds, one a file")
    cmd.add_argument("files", nargs="+", help=".npy, .csv or whitespace-separated text, one (n, d) cloud a file")
    cmd.add_argument("--method", default="exact", choices=["exact", "sinkhorn", "sliced", "1d"])
    cmd.add_argument("--p", type=_positive(float, "--p"), default=2.0, help="order of W_p (default 2)")
    cmd.add_argument("--reg", type=_positive(float, "--reg"), default=None, help="entropic strength (method sinkhorn)")
    cmd.add_argument("--n-projections", type=_positive(int, "--n-projections"), default=64,
                     help="directions (method sliced, default 64)")
    cmd.add_argument("--seed", type=int, default=0, help="seed of the directions (method sliced)")
    cmd.add_argument("--scheduler", default=None, help="address of a Dask scheduler (needs the dask extra)")
    cmd.add_argument("--store", default=None, help="folder keeping finished pairs: a rerun resumes")
    cmd.add_argument("--out", default="distances.npy", help="where to save the matrix (default distances.npy)")
    cmd.add_argument("--no-progress", dest="progress", action="store_false")
    cmd.set_defaults(run=_run_pairwise)


def _add_distance_command(commands) -> None:
    dist = commands.add_parser("distance", help="W_p between two point clouds read from files",
                               description="W_p between the point clouds in files X and Y "
                               "(.npy, or .csv/.txt with one point a row); weights files are "
                               "normalised to mass 1. Exit code 0 when the result is optimal, 1 "
                               "when not, 2 on bad input.")
    dist.add_argument("X", help="source points: .npy, .csv or .txt, one point a row")
    dist.add_argument("Y", help="target points, same dimension")
    dist.add_argument("--weights-x", metavar="F", help="weights of X (one a row; default uniform)")
    dist.add_argument("--weights-y", metavar="F", help="weights of Y (one a row; default uniform)")
    dist.add_argument("--p", type=_positive(float, "--p"), default=2.0, help="order of W_p (default 2)")
    dist.add_argument("--metric", default="euclidean", choices=["euclidean", "sqeuclidean", "cityblock"])
    dist.add_argument("--method", default="exact", choices=DISTANCE_METHODS)
    dist.add_argument("--reg", type=_positive(float, "--reg"), help="entropic strength (sinkhorn)")
    dist.add_argument("--json", action="store_true", help="print one JSON object")
    dist.set_defaults(run=_run_distance)


def _add_bench_command(commands) -> None:
    bench = commands.add_parser("bench", help="benchmark otsolve against every installed peer; write a report",
                                description="Time otsolve's solvers and every installed peer (POT, SciPy, "
                                "GeomLoss, wasserstein) on seeded problem families in one process; write "
                                "DIR/report.md, DIR/results.json and plots. Exit code 0, or 2 on bad input.")
    bench.add_argument("--suite", choices=["quick", "full"], default="quick",
                       help="quick: a few minutes on 2 cores (default); full: the README's numbers")
    bench.add_argument("--solvers", nargs="+", metavar="S", help="solver names (otsolve.exact, pot.emd, ...) "
                       "or libraries (otsolve, POT, SciPy, GeomLoss); default all installed")
    bench.add_argument("--problems", nargs="+", metavar="P", help="problem names (gauss2d-sqeuclidean, "
                       "grid-shapes, ...) or families (clouds, grids, assignment, batch, dotmark)")
    bench.add_argument("--sizes", nargs="+", metavar="N", type=_positive(int, "--sizes"),
                       help="sizes for every problem (points per side; pixels per side for grids)")
    bench.add_argument("--out", default="bench_out", metavar="DIR", help="report folder (default bench_out)")
    bench.add_argument("--dotmark", metavar="DIR", help="a folder of DOTmark CSV files (<Class>/data<RES>_<id>.csv)")
    bench.add_argument("--seed", type=int, default=0)
    bench.add_argument("--no-progress", dest="progress", action="store_false")
    bench.set_defaults(run=_run_bench)


def _run_bench(args) -> int:
    from .bench import run

    res = run(args.suite, solvers=args.solvers, problems=args.problems, sizes=args.sizes, out=args.out,
              progress=args.progress, dotmark=args.dotmark, seed=args.seed)
    wrong = sum(r["flag"] == "wrong" for r in res.runs)
    print(f"{len(res.runs)} runs in {res.meta['seconds']:.0f} s ({len(res.skipped)} skipped, {wrong} flagged wrong)")
    for path in res.files.values():
        print(f"  wrote {path}")
    return 0


def _positive(kind, name):
    """An argparse type: a number of ``kind`` > 0, with an error naming the option."""
    def parse(text):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} must be a {kind.__name__}; got {text!r}") from None
        if not value > 0 or (kind is float and not math.isfinite(value)):
            raise argparse.ArgumentTypeError(f"{name} must be a finite number > 0; got {text}")
        return value
    return parse


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        """One line and exit code 2 (argparse's code), without the usage block."""
        self.exit(2, f"otsolve: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="otsolve", description=__doc__)
    commands = parser.add_subparsers(dest="command", parser_class=_Parser)
    demo = commands.add_parser("demo", help="exact Wasserstein distance on built-in demo clouds (default)")
    for p in (parser, demo):
        p.add_argument("--n", type=_positive(int, "--n"), default=3000, help="points per cloud (default 3000)")
        p.add_argument("--p", type=_positive(float, "--p"), default=2.0, help="order of W_p (default 2)")
        p.add_argument("--seed", type=int, default=0)
    _add_distance_command(commands)
    _add_gan_commands(commands)
    _add_pairwise_command(commands)
    _add_bench_command(commands)
    parser.set_defaults(run=_run_demo)
    demo.set_defaults(run=_run_demo)
    return parser


def main(argv=None) -> int:
    """Run the command line; bad input ends with exit code 2 and one line naming it."""
    args = build_parser().parse_args(argv)
    try:
        with warnings.catch_warnings():  # the status and message are printed with the result
            warnings.simplefilter("ignore", ConvergenceWarning)
            return args.run(args)
    except (ValueError, TypeError) as err:
        print(f"otsolve: error: {str(err).splitlines()[0]}", file=sys.stderr)
        return 2
    except ModuleNotFoundError as err:  # torch for the gan commands
        print(f"otsolve: error: {args.command} needs {err.name}: pip install 'otsolve[gan]' "
              "(see the README for choosing a PyTorch build)", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

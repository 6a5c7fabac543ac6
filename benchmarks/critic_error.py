"""The critic-error study of "Approximating the Wasserstein Metric in GANs" (Mallasto, Montufar,
Gerolin), Table 1 / Figure 2, with otsolve's solvers added as rows. Run by hand (not by pytest):

    python benchmarks/critic_error.py [--reps 20] [--steps 500] [--figure docs/critic_error.png]

Each critic (WC, GP, c-transform) is trained for 500 minibatches of 64 samples, then its batch
estimate is compared with the exact batch W1 (otsolve.exact) on 20 fresh batch pairs; the table
gives mean ± std over repetitions of the mean absolute error, and the cost of one step.
"""
import argparse
import time

import torch

from otsolve.gan import critic_error_study
from otsolve.gan.study import SETTINGS


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=20)
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--eval-batches", type=int, default=20)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--figure", default="critic_error.png")
    parser.add_argument("--settings", nargs="+", default=list(SETTINGS))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    res = critic_error_study(args.settings, n_reps=args.reps, n_train=args.steps, n_eval=args.eval_batches,
                             progress=True)
    for s in args.settings:
        print(f"{s}: {SETTINGS[s][2]}")
    print(res.table())
    for r in res.rows:
        print(f"  {r.setting:9s} {r.method:20s} mean signed error {r.bias:+.3f}")
    print(f"figure: {res.save_figure(args.figure)}; {res.config}; total {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()

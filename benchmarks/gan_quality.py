"""Which critic or OT loss trains the best generator (issue 17, the seed poster's Figure 3 remark).
Run by hand (not by pytest):

    python benchmarks/gan_quality.py [--steps 1000] [--data gaussians8 digits] [--figure docs/gan_quality.png]

Trains the same generator (same seed, budget, batch size) with each critic (WC, GP, c-transform) and
each solver loss (exact, Sinkhorn divergence, semi-dual, energy), with Adam and optimistic Adam, and
reports the exact W1 and W2 between 2000 generated and held-out data points, mode coverage for
gaussians8, the exact batch W1 over training and the wall time per generator step.
"""
import argparse
import time

import torch

from otsolve.gan import QualityResult, generator_quality_study
from otsolve.gan.quality import DATA, STUDY_LOSSES, STUDY_OPTIMIZERS


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", nargs="+", default=list(DATA))
    parser.add_argument("--losses", nargs="+", default=list(STUDY_LOSSES))
    parser.add_argument("--optimizers", nargs="+", default=list(STUDY_OPTIMIZERS))
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--eval-size", type=int, default=2000)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--figure", default="gan_quality.png")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    start, rows = time.perf_counter(), []
    for data in args.data:
        for loss in args.losses:  # one loss at a time: each finished row is printed at once
            part = generator_quality_study([data], [loss], args.optimizers, n_steps=args.steps,
                                           batch_size=args.batch_size, eval_size=args.eval_size, seed=args.seed,
                                           progress=True)
            rows += part.rows
            print("\n".join(part.table().splitlines()[2 * (len(rows) > len(part.rows)):]), flush=True)
    res = QualityResult(rows, dict(part.config, data=args.data, losses=args.losses))
    print(f"figure: {res.save_figure(args.figure)}; {res.config}; total {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()

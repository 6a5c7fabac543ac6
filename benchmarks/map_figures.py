"""Figures of docs/maps.md and docs/gan.md: a transport map between two 2-D clouds, the recovered
affine map between two Gaussians, and the bilinear game under GD and optimistic optimisers.
Run by hand (not by pytest):

    python benchmarks/map_figures.py [--out docs]
"""
import argparse
import os

import numpy as np
from matplotlib.figure import Figure
from scipy.linalg import sqrtm
from scipy.stats import norm, qmc

import otsolve

M1, M2 = np.array([0.0, 0.0]), np.array([3.0, -0.5])
S1 = np.array([[1.0, 0.3], [0.3, 0.5]])
S2 = np.array([[0.6, -0.2], [-0.2, 1.2]])


def gaussian_qmc(n, seed, m, S):
    u = qmc.Sobol(2, scramble=True, seed=seed).random(n)
    return m + norm.ppf(u) @ np.linalg.cholesky(S).T


def bures_matrix(S1, S2):
    r = np.real(sqrtm(S1))
    ri = np.linalg.inv(r)
    return ri @ np.real(sqrtm(r @ S2 @ r)) @ ri


def clouds_figure(path):
    rng = np.random.default_rng(0)
    theta = rng.uniform(0, 2 * np.pi, 150)
    x = np.c_[np.cos(theta), np.sin(theta)] * rng.uniform(0.3, 1.0, (150, 1))          # a disc
    y = np.c_[rng.uniform(2.0, 4.0, 120), rng.uniform(-1.5, 1.5, 120) ** 3 / 2]       # a warped square
    fig = Figure(figsize=(11, 3.6), layout="constrained")
    axes = fig.subplots(1, 3)
    grid = np.stack(np.meshgrid(np.linspace(-1, 1, 9), np.linspace(-1, 1, 9)), -1).reshape(-1, 2)
    for ax, (method, reg) in zip(axes, (("exact", None), ("sinkhorn", 0.05), ("sinkhorn", 0.5))):
        T = otsolve.transport_map(x, y, method=method, reg=reg)
        ax.scatter(*y.T, s=6, c="0.6", label="targets y")
        ax.scatter(*x.T, s=6, c="C0", label="sources x")
        ax.plot(*np.stack([x, T.at_sources], 1)[::3].transpose(2, 1, 0), c="C0", lw=0.5, alpha=0.6)
        ax.scatter(*T.at_sources.T, s=6, c="C0", marker="s", alpha=0.5)
        Tg = T(grid)
        ax.scatter(*Tg.T, s=8, c="C3", marker="x", label="T(grid)")
        ax.set_title(f"{method}" + (f", reg={reg}" if reg else ""))
        ax.set_aspect("equal")
    axes[0].legend(loc="lower left", fontsize=7)
    fig.suptitle("x_i -> at_sources (every 3rd drawn; squares) and T on a grid of new points in the disc (x)")
    fig.savefig(path, dpi=90)


def gaussians_figure(path):
    x, y = gaussian_qmc(512, 1, M1, S1), gaussian_qmc(512, 2, M2, S2)
    A = bures_matrix(S1, S2)
    x_new = np.random.default_rng(3).multivariate_normal(M1, S1, 40)
    fig = Figure(figsize=(11, 3.8), layout="constrained")
    axes = fig.subplots(1, 3)
    for ax, (method, reg) in zip(axes, (("exact", None), ("sinkhorn", 0.1), ("semidual", 0.1))):
        T = otsolve.transport_map(x, y, method=method, reg=reg, **({"seed": 0} if method == "semidual" else {}))
        true, est = M2 + (x_new - M1) @ A.T, T(x_new)
        ax.scatter(*y.T, s=3, c="0.8")
        ax.scatter(*x_new.T, s=8, c="C0")
        ax.scatter(*true.T, s=30, facecolors="none", edgecolors="k", label="Bures map")
        ax.scatter(*est.T, s=8, c="C3", label="T(x_new)")
        err = np.sqrt(np.mean(np.sum((est - true) ** 2, 1)))
        ax.set_title(f"{method}" + (f", reg={reg}" if reg else "") + f": RMS error {err:.3f}")
        ax.set_aspect("equal")
    axes[0].legend(loc="upper left", fontsize=7)
    fig.suptitle("N(m1, S1) -> N(m2, S2), 512 Sobol points each; 40 new source points")
    fig.savefig(path, dpi=90)


def bilinear_figure(path, n_steps=1500):
    import torch
    from otsolve.gan import OptimisticAdam, OptimisticSGD

    A = torch.tensor([[1.0, 0.5], [-0.3, 1.2]], dtype=torch.float64)
    runs = {"GD (lr 0.05)": lambda p, mx: torch.optim.SGD(p, lr=0.05, maximize=mx),
            "optimistic GD (lr 0.05)": lambda p, mx: OptimisticSGD(p, lr=0.05, maximize=mx),
            "Adam (lr 0.01)": lambda p, mx: torch.optim.Adam(p, lr=0.01, betas=(0.5, 0.9), maximize=mx),
            "optimistic Adam (lr 0.01)": lambda p, mx: OptimisticAdam(p, lr=0.01, maximize=mx)}
    fig = Figure(figsize=(10, 4), layout="constrained")
    ax1, ax2 = fig.subplots(1, 2)
    for name, make in runs.items():
        x = torch.nn.Parameter(torch.tensor([1.0, 0.5], dtype=torch.float64))
        y = torch.nn.Parameter(torch.tensor([0.5, -1.0], dtype=torch.float64))
        ox, oy = make([x], False), make([y], True)
        path_xy, norms = [], []
        for _ in range(n_steps):
            ox.zero_grad(), oy.zero_grad()
            (x @ A @ y).backward()
            ox.step(), oy.step()
            path_xy.append([float(x[0].detach()), float(y[0].detach())])
            norms.append(float(torch.cat([x, y]).detach().norm()))
        path_xy = np.array(path_xy)
        ax1.plot(*path_xy[:400].T, lw=0.8, label=name)
        ax2.semilogy(norms, label=name)
    ax1.set_xlabel("x[0]"), ax1.set_ylabel("y[0]"), ax1.set_title("first 400 iterates (x[0], y[0])")
    ax1.set_xlim(-4, 4), ax1.set_ylim(-4, 4)
    ax2.set_xlabel("step"), ax2.set_ylabel("|(x, y)| (equilibrium 0)"), ax2.set_title("min_x max_y x^T A y")
    ax2.legend(fontsize=7)
    fig.savefig(path, dpi=90)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="docs")
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    for name, make in (("maps_clouds.png", clouds_figure), ("maps_gaussians.png", gaussians_figure),
                       ("bilinear_game.png", bilinear_figure)):
        path = os.path.join(args.out, name)
        make(path)
        print("saved", path)


if __name__ == "__main__":
    main()

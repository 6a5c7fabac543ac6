"""The figures of docs/pairwise.md: python docs/pairwise_figures.py (about a minute on 2 cores)."""
from pathlib import Path


def main(K=99, n=100, seed=0):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    import otsolve

    rng = np.random.default_rng(seed)
    shapes = np.array([[1.0, 1.0], [3.0, 0.2], [1.0, 1.0]])
    shifts = np.array([[0.0, 0.0], [0.0, 0.0], [4.0, 0.0]])
    order = np.argsort(np.arange(K) % 3, kind="stable")  # families in blocks: a readable heat map
    clouds = [rng.normal(size=(n, 2)) * shapes[k % 3] + shifts[k % 3] for k in order]
    res = otsolve.pairwise(clouds, p=2, progress=True)
    print(f"{K} clouds, {K * (K - 1) // 2} pairs in {res.seconds:.1f} s, {len(res.failures)} failures")
    D, family = res.distances, np.arange(K)[order] % 3
    J = np.eye(K) - 1.0 / K
    vals, vecs = np.linalg.eigh(-0.5 * J @ (D ** 2) @ J)  # classical MDS
    xy = vecs[:, -2:] * np.sqrt(np.maximum(vals[-2:], 0.0))
    here = Path(__file__).parent
    fig, ax = plt.subplots(figsize=(4.5, 3.8))
    im = ax.imshow(D, cmap="viridis")
    fig.colorbar(im, label="W2")
    ax.set_title("W2 between 99 clouds (3 families)")
    fig.savefig(here / "pairwise_heatmap.png", dpi=80, bbox_inches="tight")
    fig, ax = plt.subplots(figsize=(4.5, 3.8))
    names = ["round", "stretched", "shifted"]
    for f in range(3):
        ax.scatter(*xy[family == f].T, s=12, label=names[f])
    ax.legend()
    ax.set_title("classical MDS of the W2 matrix")
    fig.savefig(here / "pairwise_mds.png", dpi=80, bbox_inches="tight")


if __name__ == "__main__":
    main()

"""Benchmark problems: seeded generators of point clouds, DOTmark-style grid histograms,
assignment problems and GAN-sized batches, and a reader for the real DOTmark files."""
from __future__ import annotations

import functools
import os
import re
import zlib
from dataclasses import dataclass, field

import numpy as np
from scipy.spatial.distance import cdist

DENSE_MAX_PAIRS = 2**25  # above this many costs (256 MiB) a problem has no dense matrix: lazy solvers only
ROW_CHUNK_PAIRS = 2**22  # costs computed at once when a pass over a lazy problem is chunked by rows
OBJECTIVES = ("exact", "entropic")
ENTROPIC_REG = 1e-2      # reg of the entropic problems, relative to the spread max(C) - min(C)
GRID_ROUGH, GRID_MODERATE, GRID_SMOOTH = 1 / 64, 1 / 16, 1 / 4  # GRF correlation lengths, in image widths


@dataclass(eq=False)
class Problem:
    """One benchmark instance: weights ``a``, ``b`` on points ``x``, ``y`` (or a fixed cost matrix).

    ``size`` is the value on the size axis (points per side, or pixels per image side for grids);
    ``metric`` is ``"sqeuclidean"`` or ``"euclidean"`` (the cost is ``metric(x_i, y_j)``), or
    ``None`` when only ``cost`` is given.
    """

    family: str
    name: str
    size: int
    a: np.ndarray
    b: np.ndarray
    x: np.ndarray | None = None
    y: np.ndarray | None = None
    metric: str | None = None
    cost: np.ndarray | None = field(default=None, repr=False)
    objectives: tuple = OBJECTIVES
    seed: int = 0

    @property
    def n(self) -> int:
        return len(self.a)

    @property
    def m(self) -> int:
        return len(self.b)

    @property
    def pairs(self) -> int:
        return self.n * self.m

    @property
    def has_points(self) -> bool:
        return self.x is not None

    @property
    def dense_ok(self) -> bool:
        return self.cost is not None or self.pairs <= DENSE_MAX_PAIRS

    @functools.cached_property
    def C(self) -> np.ndarray:
        """The dense (n, m) cost matrix (scipy's cdist, independent of otsolve's kernels)."""
        if self.cost is not None:
            return self.cost
        if not self.dense_ok:
            raise ValueError(f"{self.name} at size {self.size} has {self.pairs} pairs: too many for a dense matrix")
        return cdist(self.x, self.y, self.metric)

    def cost_rows(self):
        """Yield (row slice, costs of those rows), in chunks of about ROW_CHUNK_PAIRS costs."""
        step = max(1, ROW_CHUNK_PAIRS // self.m)
        for lo in range(0, self.n, step):
            rows = slice(lo, min(self.n, lo + step))
            if self.cost is not None or "C" in self.__dict__:
                yield rows, self.C[rows]
            else:
                yield rows, cdist(self.x[rows], self.y, self.metric)

    @functools.cached_property
    def reg(self) -> float:
        """The entropic strength of this problem: ENTROPIC_REG times the spread of its costs."""
        lo, hi = np.inf, -np.inf
        for _, block in self.cost_rows():
            lo, hi = min(lo, block.min()), max(hi, block.max())
        return ENTROPIC_REG * float(hi - lo)


def _rng(seed, name, size):
    """A generator seeded by (seed, name, size): reproducible across processes and platforms."""
    return np.random.default_rng([seed, zlib.crc32(name.encode()), size])


def _uniform(n):
    return np.full(n, 1.0 / n)


# -- point clouds -------------------------------------------------------------------------------

def _gauss2d(rng, n):
    x = rng.normal(size=(n, 2))
    y = rng.normal(size=(n, 2)) * [1.5, 0.5] + [2.0, 1.0]
    return x, y


def _mixture(rng, n, d=2, k=4, spread=4.0, sd=0.5):
    """Two mixtures of k Gaussians with means uniform in [-spread, spread]^d (different means)."""
    def one():
        means = rng.uniform(-spread, spread, size=(k, d))
        return means[rng.integers(k, size=n)] + sd * rng.normal(size=(n, d))
    return one(), one()


def _uniform2d(rng, n):
    return rng.random((n, 2)), rng.random((n, 2))


def _gauss64d(rng, n, d=64):
    x = rng.normal(size=(n, d))
    y = rng.normal(size=(n, d)) * rng.uniform(0.5, 1.5, size=d) + 0.5
    return x, y


CLOUDS = {"gauss2d": _gauss2d, "mixture2d": _mixture, "uniform2d": _uniform2d, "gauss64d": _gauss64d}


def point_clouds(kind, n, metric="sqeuclidean", seed=0) -> Problem:
    """Two clouds of n points (``kind`` in CLOUDS) with uniform weights and cost ``metric``."""
    name = f"{kind}-{metric}"
    x, y = CLOUDS[kind](_rng(seed, kind, n), n)
    return Problem("clouds", name, n, _uniform(n), _uniform(n), x, y, metric, seed=seed)


def cloud_collection(k, n, seed=0) -> list:
    """k 2-D clouds of n points from three families in turn: round, stretched and shifted
    Gaussians (the collections of the pairwise benchmark)."""
    rng = np.random.default_rng(seed)
    scale = np.array([[1.0, 1.0], [1.5, 0.5], [1.0, 1.0]])
    shift = np.array([[0.0, 0.0], [0.0, 0.0], [2.0, 1.0]])
    return [rng.normal(size=(n, 2)) * scale[t % 3] + shift[t % 3] for t in range(k)]


# -- DOTmark-style grids (Schrieber, Schuhmacher, Gottschlich 2017) ------------------------------

def _grf(rng, res, length):
    """A Gaussian random field: white noise filtered by a Gaussian of ``length`` image widths (FFT)."""
    k = np.fft.fftfreq(res)
    k2 = k[:, None] ** 2 + k[None, :] ** 2
    field_ = np.fft.ifft2(np.fft.fft2(rng.normal(size=(res, res))) * np.exp(-2 * (np.pi * length * res) ** 2 * k2)).real
    return (field_ - field_.mean()) / field_.std()


def _cauchy(rng, res):
    """A sum of 1 to 4 bivariate Cauchy densities with random centres and scales."""
    t = (np.arange(res) + 0.5) / res
    u, v = np.meshgrid(t, t, indexing="ij")
    out = np.zeros((res, res))
    for _ in range(rng.integers(1, 5)):
        cu, cv = rng.random(2)
        s = rng.uniform(0.02, 0.2)
        out += s / (2 * np.pi) * ((u - cu) ** 2 + (v - cv) ** 2 + s * s) ** -1.5
    return out


def _shapes(rng, res):
    """1 to 3 random filled ellipses and rectangles (grey value 1 inside, 0 elsewhere)."""
    t = (np.arange(res) + 0.5) / res
    u, v = np.meshgrid(t, t, indexing="ij")
    out = np.zeros((res, res))
    while not out.any():  # a shape smaller than a pixel covers none: draw again
        for _ in range(rng.integers(1, 4)):
            cu, cv = rng.uniform(0.2, 0.8, 2)
            ru, rv = rng.uniform(0.05, 0.3, 2)
            if rng.random() < 0.5:
                out[((u - cu) / ru) ** 2 + ((v - cv) / rv) ** 2 <= 1] = 1.0
            else:
                out[(abs(u - cu) <= ru) & (abs(v - cv) <= rv)] = 1.0
    return out


GRIDS = {
    "whitenoise": lambda rng, res: rng.random((res, res)),
    "grf-rough": lambda rng, res: _grf(rng, res, GRID_ROUGH),
    "grf-moderate": lambda rng, res: _grf(rng, res, GRID_MODERATE),
    "grf-smooth": lambda rng, res: _grf(rng, res, GRID_SMOOTH),
    "loggrf": lambda rng, res: np.exp(_grf(rng, res, GRID_MODERATE)),
    "cauchy": _cauchy,
    "shapes": _shapes,
}


def grid_image(kind, res, rng) -> np.ndarray:
    """One (res, res) non-negative image of class ``kind`` (GRIDS); GRFs are shifted to min 0."""
    img = GRIDS[kind](rng, res)
    return img - img.min() if kind.startswith("grf") else img


def grid_points(res) -> np.ndarray:
    """The (res * res, 2) pixel centres of a res x res image, in the unit square, row-major."""
    t = (np.arange(res) + 0.5) / res
    return np.stack(np.meshgrid(t, t, indexing="ij"), axis=-1).reshape(-1, 2)


def histogram_problem(img_a, img_b, name, family="grids", seed=0) -> Problem:
    """OT between two square images as histograms on the pixel centres, squared Euclidean cost."""
    res = img_a.shape[0]
    if img_a.shape != (res, res) or img_b.shape != (res, res):
        raise ValueError(f"{name}: images must be square and of one size; got {img_a.shape} and {img_b.shape}")
    a, b = (np.asarray(img, float).ravel() for img in (img_a, img_b))
    if min(a.min(), b.min()) < 0 or min(a.sum(), b.sum()) <= 0:
        raise ValueError(f"{name}: grey values must be >= 0 and not all zero")
    pts = grid_points(res)
    return Problem(family, name, res, a / a.sum(), b / b.sum(), pts, pts, "sqeuclidean", seed=seed)


def grid_pair(kind, res, seed=0) -> Problem:
    """Two independent res x res images of class ``kind`` (GRIDS), as a histogram problem."""
    rng = _rng(seed, kind, res)
    return histogram_problem(grid_image(kind, res, rng), grid_image(kind, res, rng), f"grid-{kind}", seed=seed)


# -- the real DOTmark files ---------------------------------------------------------------------

DOTMARK_FILE = re.compile(r"data(\d+)_(\d+)\.csv$")


def read_dotmark_image(path) -> np.ndarray:
    """One DOTmark image: RES rows of RES comma-separated grey values; ValueError naming the file."""
    try:
        img = np.loadtxt(path, delimiter=",", ndmin=2)
    except (OSError, ValueError) as err:
        raise ValueError(f"DOTmark file {path!r}: cannot read comma-separated numbers "
                         f"({str(err).splitlines()[0]})") from None
    if img.shape[0] != img.shape[1] or not np.isfinite(img).all() or (img < 0).any():
        raise ValueError(f"DOTmark file {path!r}: need a square image of finite grey values >= 0; "
                         f"got shape {img.shape}")
    return img


def dotmark_problems(root, sizes=None) -> list[Problem]:
    """Pairs of DOTmark images found under ``root`` (``<Class>/data<RES>_<id>.csv``).

    Images of one class and resolution are sorted by id and paired consecutively (1001 with
    1002, 1003 with 1004, ...); the problem is named ``dotmark-<Class>`` and sized by RES.
    Only resolutions in ``sizes`` are read, when given.
    """
    if not os.path.isdir(root):
        raise ValueError(f"--dotmark: no such directory {root!r}")
    groups = {}
    for folder, _, files in sorted(os.walk(root)):
        for fname in sorted(files):
            match = DOTMARK_FILE.search(fname)
            if match and (sizes is None or int(match.group(1)) in sizes):
                key = (os.path.basename(folder) or "DOTmark", int(match.group(1)))
                groups.setdefault(key, []).append((int(match.group(2)), os.path.join(folder, fname)))
    if not groups:
        raise ValueError(f"--dotmark: no DOTmark files (<Class>/data<RES>_<id>.csv) under {root!r}"
                         + ("" if sizes is None else f" at sizes {sorted(sizes)}"))
    out = []
    for (cls, res), files in sorted(groups.items()):
        files.sort()
        for (_, fa), (_, fb) in zip(files[::2], files[1::2]):
            out.append(histogram_problem(read_dotmark_image(fa), read_dotmark_image(fb), f"dotmark-{cls}",
                                         family="dotmark"))
    return out


# -- assignment and GAN batches -----------------------------------------------------------------

def assignment(kind, n, seed=0) -> Problem:
    """Uniform n = m: ``"points"`` uniform in the unit square (Euclidean cost) or ``"random"`` iid U(0, 1) costs."""
    rng = _rng(seed, f"assign-{kind}", n)
    if kind == "points":
        x, y = _uniform2d(rng, n)
        return Problem("assignment", "assign-points", n, _uniform(n), _uniform(n), x, y, "euclidean",
                       objectives=("exact",), seed=seed)
    return Problem("assignment", "assign-random", n, _uniform(n), _uniform(n), cost=rng.random((n, n)),
                   objectives=("exact",), seed=seed)


def gan_batch(n, seed=0) -> Problem:
    """A GAN minibatch: n generator outputs N(0, I) against n samples of 8 Gaussians on a circle."""
    rng = _rng(seed, "gan-8gaussians", n)
    angles = 2 * np.pi * rng.integers(8, size=n) / 8
    y = 2 * np.stack([np.cos(angles), np.sin(angles)], axis=1) + 0.05 * rng.normal(size=(n, 2))
    x = rng.normal(size=(n, 2))
    return Problem("batch", "gan-8gaussians", n, _uniform(n), _uniform(n), x, y, "sqeuclidean", seed=seed)


def _registry():
    out = {}
    for kind in CLOUDS:
        for metric in ("sqeuclidean", "euclidean"):
            out[f"{kind}-{metric}"] = ("clouds", functools.partial(point_clouds, kind, metric=metric))
    for kind in GRIDS:
        out[f"grid-{kind}"] = ("grids", functools.partial(grid_pair, kind))
    for kind in ("points", "random"):
        out[f"assign-{kind}"] = ("assignment", functools.partial(assignment, kind))
    out["gan-8gaussians"] = ("batch", gan_batch)
    return out


PROBLEMS = _registry()  # name -> (family, builder(size, seed=0))
FAMILIES = ("clouds", "grids", "dotmark", "assignment", "batch")


def make_problem(name, size, seed=0) -> Problem:
    """The problem ``name`` (a key of PROBLEMS) at ``size``, from the generator seeded by ``seed``.

    Examples
    --------
    >>> p = make_problem("gauss2d-sqeuclidean", 50)
    >>> p.n, p.x.shape, bool(np.array_equal(p.x, make_problem("gauss2d-sqeuclidean", 50).x))
    (50, (50, 2), True)
    """
    if name not in PROBLEMS:
        raise ValueError(f"unknown problem {name!r}; choose from {', '.join(PROBLEMS)}")
    return PROBLEMS[name][1](size, seed=seed)

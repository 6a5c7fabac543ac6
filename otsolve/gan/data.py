"""Built-in data sets that need no download: a ring of 8 Gaussians, shifted 2-D Gaussians, and the
8x8 handwritten digits shipped inside scikit-learn (pixels scaled to [0, 1])."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from .._validation import check_choice, check_count, check_points, check_positive

DATASETS = ("gaussians8", "gaussians+", "gaussians-", "digits", "digits0-4", "digits5-9")
RING_RADIUS, RING_STD = 2.0, 0.05  # ring of 8 modes (Metz et al. 2017 use radius 2); std of each mode
SHIFT = np.array([1.0, 1.0])       # the poster's Figure 2: standard Gaussians shifted by +-[1, 1]
DIGIT_SCALE = 16.0                 # load_digits pixels are integers 0..16


@dataclass(frozen=True)
class Sampler:
    """A distribution to sample minibatches from: ``sample(n, rng)`` returns an (n, dim) float64 array.

    ``centers`` holds the modes of ``gaussians8``; ``image_shape`` the shape of image data.
    """

    name: str
    dim: int
    draw: Callable[[int, np.random.Generator], np.ndarray]
    centers: np.ndarray | None = None
    image_shape: tuple | None = None

    def sample(self, n, rng):
        return self.draw(check_count(n, "n"), rng)


def ring_centers(n_modes=8, radius=RING_RADIUS):
    angle = 2 * np.pi * np.arange(n_modes) / n_modes
    return radius * np.stack([np.cos(angle), np.sin(angle)], axis=1)


def make_sampler(name):
    """The built-in data set ``name``, one of :data:`DATASETS`.

    ``"gaussians+"``/``"gaussians-"``: standard 2-D Gaussians shifted by +[1, 1] / -[1, 1];
    ``"digits"``: all 1797 scikit-learn digits; ``"digits0-4"``/``"digits5-9"``: those classes only.

    Examples
    --------
    >>> import numpy as np
    >>> s = make_sampler("gaussians8")
    >>> s.sample(5, np.random.default_rng(0)).shape, s.centers.shape
    ((5, 2), (8, 2))
    """
    check_choice(name, "data", DATASETS)
    if name == "gaussians8":
        centers = ring_centers()

        def draw(n, rng):
            return centers[rng.integers(0, len(centers), size=n)] + RING_STD * rng.normal(size=(n, 2))
        return Sampler(name, 2, draw, centers=centers)
    if name in ("gaussians+", "gaussians-"):
        mean = SHIFT if name == "gaussians+" else -SHIFT
        return Sampler(name, 2, lambda n, rng: mean + rng.normal(size=(n, 2)))
    images = _digits(None if name == "digits" else range(0, 5) if name == "digits0-4" else range(5, 10))
    return Sampler(name, 64, lambda n, rng: images[rng.integers(0, len(images), size=n)], image_shape=(8, 8))


def _digits(classes):
    from sklearn.datasets import load_digits  # ships with scikit-learn: no download

    data = load_digits()
    keep = np.ones(len(data.target), bool) if classes is None else np.isin(data.target, list(classes))
    return np.ascontiguousarray(data.data[keep] / DIGIT_SCALE, dtype=np.float64)


def mode_coverage(samples, centers, radius=4 * RING_STD, min_count=None):
    """Count the modes a sample covers: a mode is covered when at least ``min_count`` samples lie
    within ``radius`` of its center (default: a quarter of its fair share, n / (4 * n_modes)).

    Returns ``(covered, in_mode)``: the number of covered modes and the fraction of samples within
    ``radius`` of some mode (sample quality).

    Examples
    --------
    >>> c = ring_centers()
    >>> mode_coverage(np.repeat(c[:6], 10, axis=0), c)
    (6, 1.0)
    """
    samples, centers = check_points(samples, "samples"), check_points(centers, "centers")
    radius = check_positive(radius, "radius")
    n, k = samples.shape[0], centers.shape[0]
    min_count = max(1, n // (4 * k)) if min_count is None else check_count(min_count, "min_count")
    dist = np.sqrt(((samples[:, None, :] - centers[None, :, :]) ** 2).sum(axis=2))
    nearest, close = dist.argmin(axis=1), dist.min(axis=1) <= radius
    counts = np.bincount(nearest[close], minlength=k)
    return int((counts >= min_count).sum()), float(close.mean())

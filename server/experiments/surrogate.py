"""A Gaussian-process surrogate of a noisy fitness: each observation carries its own noise (the
standard deviation of its reward's posterior), so that a weighting judged on few
recommendations counts for little and one judged on many counts for much.

The online weight evolution (server/experiments/evolution.py) smooths the fitness it tells
CMA-ES with it, and pre-screens a generation's candidates by its optimistic estimate (mean +
standard deviation), as plugins/evaluation/search.py does offline.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

Array = np.ndarray[Any, Any]
JITTER = 1e-6
"""Added to every observation's (normalised) noise variance, for a stable factorisation."""


class Surrogate:
    """A Gaussian process fitted on points (features), their observed means and the standard
    deviations of those means. Deterministic for a seed."""

    def __init__(
        self,
        points: Sequence[Sequence[float]],
        means: Sequence[float],
        deviations: Sequence[float],
        seed: int,
    ) -> None:
        from sklearn.exceptions import ConvergenceWarning
        from sklearn.gaussian_process import GaussianProcessRegressor
        from sklearn.gaussian_process.kernels import ConstantKernel, Matern

        x = np.asarray(points, dtype=np.float64)
        y = np.asarray(means, dtype=np.float64)
        sd = np.asarray(deviations, dtype=np.float64)
        # Normalised by hand (not normalize_y): the per-point noise must be in the same units.
        self._offset = float(y.mean())
        spread = float(y.std())
        if not spread > 0:
            spread = max(float(sd.mean()), abs(self._offset) * 0.1, 1e-6)
        self._scale = spread
        noise = (sd / spread) ** 2 + JITTER
        kernel = ConstantKernel(1.0, (1e-2, 1e2)) * Matern(
            length_scale=np.full(x.shape[1], 0.3), length_scale_bounds=(0.02, 10.0), nu=2.5
        )
        self._model = GaussianProcessRegressor(
            kernel, alpha=noise, normalize_y=False, random_state=seed
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            self._model.fit(x, (y - self._offset) / spread)

    def predict(self, points: Sequence[Sequence[float]]) -> tuple[Array, Array]:
        """The surrogate's mean fitness at the points and its standard deviation."""
        mean, sd = self._model.predict(np.asarray(points, dtype=np.float64), return_std=True)
        return (
            np.asarray(mean) * self._scale + self._offset,
            np.asarray(sd) * self._scale,
        )

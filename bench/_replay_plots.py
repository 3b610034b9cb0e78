"""What the replay benchmarks (bench.bandit_replay, bench.online_weights) share: the cumulative
CTR figure of their policies and the spread of a figure over seeded runs."""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

Array = np.ndarray[Any, Any]
SKIPPED_EVENTS = 200
"""The first events' cumulative CTR is noise: the figures start after them."""


def plot_cumulative_ctr(path: Path, curves: Mapping[str, Sequence[Array]], title: str) -> None:
    """A PNG of each policy's cumulative CTR per replayed event: one run as a dashed line,
    several as their mean with their min-max band."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    figure, axes = plt.subplots(figsize=(9, 5))
    start = SKIPPED_EVENTS
    for name, runs in curves.items():
        stacked = 100 * np.array(runs)
        steps = np.arange(1, stacked.shape[1] + 1)
        if len(runs) == 1:
            axes.plot(steps[start:], stacked[0][start:], linestyle="--", label=name)
            continue
        (mean,) = axes.plot(steps[start:], stacked.mean(axis=0)[start:], linewidth=2, label=name)
        low, high = stacked.min(axis=0)[start:], stacked.max(axis=0)[start:]
        axes.fill_between(steps[start:], low, high, color=mean.get_color(), alpha=0.2)
    axes.set_xlabel("held-out events replayed (time order)")
    axes.set_ylabel("cumulative CTR (%)")
    axes.set_title(title)
    axes.legend()
    axes.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def percent_spread(values: Sequence[float]) -> str:
    """A rate's mean over runs and its sample standard deviation, in percent."""
    mean = statistics.fmean(values)
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{100 * mean:.2f} % ± {100 * sd:.2f}"

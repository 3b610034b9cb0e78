"""The torch models trained on the CPU and on a CUDA GPU: the same figures within noise, and the
time each takes.

    .venv/bin/python -m bench.gpu_parity [--seeds 1,2,3] [--models mult-dae,sasrec,...]
                                         [--devices cpu,cuda] [--directory DIR] [--no-report]

MovieLens-100K. The collaborative models (mult-dae, mult-vae, wide-deep) on protocol (a)
(RecBole's random 80/10/10 per user, full ranking of the items not rated before), the sequence
models (gru4rec, sasrec) on protocol (b) (leave the last rating out by time, the user's earlier
items left out of the ranking), each with its defaults and `device` set, seeded the same on
both devices. A GPU does not reproduce the CPU's floating-point sums bit for bit (nor draw the
same dropout masks from the same seed), so the figures are compared against their spread over
seeds: a model passes when its mean NDCG@10 on CUDA is within two standard deviations of the
CPU's mean (sample std over the seeds on the CPU, at least 0.002).

Without a CUDA device the run says so and measures nothing (no section is written).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bench._report import publish
from bench.evaluate import open_dataset
from plugins.evaluation.harness import ModelSpec, Protocol, prepare_split, run_one
from plugins.manager import collect, get_plugin_manager

MODELS: dict[str, str] = {
    "mult-dae": "random",
    "mult-vae": "random",
    "wide-deep": "random",
    "gru4rec": "loo",
    "sasrec": "loo",
}
"""The torch models and the protocol each is measured on."""
MINIMUM_SPREAD = 0.002
"""The smallest standard deviation the parity test allows (three seeds can agree closely)."""
SPREADS = 2.0


@dataclass(frozen=True)
class Figures:
    """One model on one device: NDCG@10 per seed and training seconds per seed."""

    ndcg: tuple[float, ...]
    seconds: tuple[float, ...]


def within_noise(cpu: Sequence[float], other: Sequence[float]) -> bool:
    """Whether `other`'s mean is within SPREADS standard deviations of `cpu`'s mean (the CPU's
    sample std over seeds, at least MINIMUM_SPREAD)."""
    spread = statistics.stdev(cpu) if len(cpu) > 1 else 0.0
    return abs(statistics.fmean(other) - statistics.fmean(cpu)) <= SPREADS * max(
        spread, MINIMUM_SPREAD
    )


def measure(
    directory: Path, models: Sequence[str], devices: Sequence[str], seeds: Sequence[int]
) -> dict[str, dict[str, Figures]]:
    """Every model fitted and tested on every device and seed."""
    registry = collect(get_plugin_manager())
    snapshot = open_dataset(directory)
    candidates = np.array([item is not None for item in snapshot.item_ids], dtype=bool)
    out: dict[str, dict[str, Figures]] = {}
    for name in models:
        protocol = Protocol(MODELS[name], ks=(10,), seeds=tuple(seeds))
        out[name] = {}
        for device in devices:
            spec = ModelSpec(name, registry.algorithm(name), {"device": device})
            ndcg, seconds = [], []
            for seed in seeds:
                split = prepare_split(snapshot, protocol, seed)
                run = run_one(snapshot, spec, protocol, seed, split, candidates, (10,))
                ndcg.append(run.figures["ndcg@10"])
                seconds.append(run.train_seconds)
                print(f"{name} on {device}, seed {seed}: {ndcg[-1]:.4f} in {seconds[-1]:.1f} s")
            out[name][device] = Figures(tuple(ndcg), tuple(seconds))
    return out


def table(results: dict[str, dict[str, Figures]], devices: Sequence[str]) -> list[str]:
    """One row per model: NDCG@10 (mean ± std) and train seconds per device, the verdict."""
    header = " | ".join(f"{d} NDCG@10 | {d} train s" for d in devices)
    lines = [f"| model | {header} | within noise |", "|---|" + "---:|---:|" * len(devices) + "---|"]
    for name, by_device in results.items():
        cells = []
        for device in devices:
            figures = by_device[device]
            spread = statistics.stdev(figures.ndcg) if len(figures.ndcg) > 1 else 0.0
            cells += [
                f"{statistics.fmean(figures.ndcg):.4f} ± {spread:.4f}",
                f"{statistics.fmean(figures.seconds):.1f}",
            ]
        cpu = by_device.get("cpu")
        verdicts = [
            "met" if within_noise(cpu.ndcg, by_device[d].ndcg) else "**missed**"
            for d in devices
            if cpu is not None and d != "cpu"
        ]
        lines.append(f"| {name} | {' | '.join(cells)} | {', '.join(verdicts) or 'n/a'} |")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.gpu_parity", description=__doc__)
    parser.add_argument("--seeds", default="1,2,3")
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--devices", default="cpu,cuda")
    parser.add_argument("--directory", type=Path)
    parser.add_argument("--no-report", action="store_true")
    args = parser.parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    devices = [d.strip() for d in args.devices.split(",") if d.strip()]
    unknown = [m for m in models if m not in MODELS]
    if unknown:
        print(f"--models: unknown {unknown} (known: {', '.join(MODELS)})", file=sys.stderr)
        return 2
    import torch

    if "cuda" in devices and not torch.cuda.is_available():
        print("no CUDA device here: nothing measured (run this on a machine with a GPU)")
        return 0
    with tempfile.TemporaryDirectory() as scratch:
        results = measure(args.directory or Path(scratch), models, devices, seeds)
    gpu = torch.cuda.get_device_name(0) if "cuda" in devices else "none"
    lines = [
        "",
        f"- MovieLens-100K; mult-dae, mult-vae, wide-deep on protocol (a), gru4rec and sasrec "
        f"on protocol (b); defaults, `device` set; seeds {', '.join(map(str, seeds))}; GPU: {gpu}",
        f"- within noise: the CUDA mean NDCG@10 within {SPREADS:g} std (over seeds, on the CPU, "
        f"at least {MINIMUM_SPREAD}) of the CPU mean",
        "",
        *table(results, devices),
    ]
    if args.no_report:
        print("\n".join(lines))
    else:
        publish("Torch models on CPU and GPU", "bench.gpu_parity", argv, lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())

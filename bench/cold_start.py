"""Cold start on MovieLens-100K: new items and new users, reqo's models beside the peers.

    .venv/bin/python -m bench.cold_start [--seeds 1,2,3] [--models random,attribute-popularity,...]
                                         [--peers lightfm] [--cold-user-interactions 0]
                                         [--directory DIR] [--no-progress] [--no-report]

MovieLens-100K is loaded as `reqo dataset load ml-100k` loads it (item properties title,
genres, release_year, imdb_url; user properties age, gender, occupation, zip) and evaluated by
the harness behind `reqo evaluate` on its two cold protocols:

- `cold-items`: 10 % of the items (seeded) held out with every interaction of theirs; each test
  user's held-out items ranked among the cold items;
- `cold-users`: 10 % of the users (seeded) keep only their first `--cold-user-interactions`
  interactions in train (0: known by their properties alone); ranked among all items.

Every rating is a positive of weight 1. Models get the items' text vectors (MiniLM over the
string and set properties) and the users' properties. Peers (the `reference` extra) run as
reqo algorithms through the same harness (bench/cold_start_peers.py); a peer that cannot be
imported is reported with its error and left out. Models not registered (`wide-deep`,
`content-mf` before they exist) are skipped with a note.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from bench._report import publish
from bench.evaluate import open_dataset
from plugins.algorithm import Algorithm
from plugins.evaluation.harness import Evaluation, ModelSpec, Protocol, evaluate
from plugins.evaluation.report import TRAIN_SECONDS, format_figure, summarise, versions
from plugins.manager import collect, get_plugin_manager
from plugins.training import ItemEmbeddings, ItemTextVectorProvider
from server.training.item_vectors import text_provider_for

MODELS = (
    "random",
    "attribute-popularity",
    "content-knn",
    "attribute-ridge",
    "wide-deep",
    "content-mf",
)
PEERS = ("lightfm", "pytorch-widedeep")
REFERENCE_PACKAGES = Path(__file__).resolve().parent.parent / "build" / "reference"
"""Where `make bench-reference` installs pytorch-widedeep and torchvision (see `peer`)."""
FIGURES = ("ndcg@10", "recall@10")


def peer(name: str) -> type[Algorithm]:
    """A peer's algorithm class; ImportError (or another error) where it cannot be used."""
    if name == "lightfm":
        import lightfm  # noqa: F401  (names what is missing)

        from bench.cold_start_peers import LightFMPeer

        return LightFMPeer
    if name == "pytorch-widedeep":
        from bench.cold_start_peers import PyTorchWideDeepPeer, torchvision_without_ops

        # Installed apart from the virtual environment by `make bench-reference`: torchvision's
        # wheel is built for CUDA torch and breaks every later `import transformers` (the text
        # embedder's) in a process that has not loaded it as torchvision_without_ops does.
        if REFERENCE_PACKAGES.is_dir() and str(REFERENCE_PACKAGES) not in sys.path:
            sys.path.append(str(REFERENCE_PACKAGES))
        torchvision_without_ops()  # beside a CPU torch (see there)
        import pytorch_widedeep  # noqa: F401

        return PyTorchWideDeepPeer
    raise ValueError(f"unknown peer '{name}' (known: {', '.join(PEERS)})")


def table(evaluations: dict[str, Evaluation], peers: set[str]) -> list[str]:
    """One row per model: NDCG@10 and Recall@10 on each protocol, and training seconds."""
    header = ["model"]
    for name in evaluations:
        header += [f"{name} NDCG@10", f"{name} Recall@10", f"{name} train s"]
    lines = ["| " + " | ".join(header) + " |", "|---|" + "---:|" * (len(header) - 1)]
    summaries = {name: summarise(e) for name, e in evaluations.items()}
    models = list(next(iter(summaries.values()))) if summaries else []
    for model in models:
        cells = []
        for summary in summaries.values():
            values = summary[model]
            cells += [format_figure(*values[f]) for f in FIGURES]
            cells.append(format_figure(*values["train_seconds"], digits=2))
        label = f"{model} (peer)" if model in peers else model
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return lines


def verdicts(evaluations: dict[str, Evaluation], peers: set[str]) -> list[str]:
    """The issue's target: a reqo model that beats every peer's NDCG@10 on both protocols, in
    no more training time than the fastest peer's."""
    summaries = {name: summarise(e) for name, e in evaluations.items()}
    if not peers or not summaries:
        return ["- target not judged: no peer was measured"]
    models = [m for m in next(iter(summaries.values())) if m not in peers]

    def beats(model: str) -> bool:
        for summary in summaries.values():
            figure, seconds = summary[model]["ndcg@10"][0], summary[model][TRAIN_SECONDS][0]
            for peer in peers:
                if (
                    figure <= summary[peer]["ndcg@10"][0]
                    or seconds > summary[peer][TRAIN_SECONDS][0]
                ):
                    return False
        return True

    winners = [m for m in models if beats(m)]
    best = {
        name: max(models, key=lambda m: summary[m]["ndcg@10"][0])
        for name, summary in summaries.items()
    }
    lines = [
        f"- best reqo model on {name}: {model} "
        f"({summaries[name][model]['ndcg@10'][0]:.4f} NDCG@10; peers: "
        + ", ".join(f"{p} {summaries[name][p]['ndcg@10'][0]:.4f}" for p in sorted(peers))
        + ")"
        for name, model in best.items()
    ]
    verdict = "met" if winners else "**missed**"
    who = f" by {', '.join(winners)}" if winners else ""
    lines.append(
        "- target: a reqo model beats every peer's NDCG@10 on both protocols in no more "
        f"training time: {verdict}{who}"
    )
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--seeds", default="1,2,3", help="comma-separated seeds (default 1,2,3)")
    parser.add_argument("--models", default=",".join(MODELS), help="reqo algorithms")
    parser.add_argument("--peers", default=",".join(PEERS), help="reference peers ('' for none)")
    parser.add_argument("--cold-user-interactions", type=int, default=0)
    parser.add_argument(
        "--directory",
        type=Path,
        default=Path(tempfile.gettempdir()) / "reqo-bench-evaluate",
        help="where the DuckDB file of ML-100K is kept (shared with bench.evaluate)",
    )
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    parser.add_argument("--no-report", action="store_true", help="do not touch BENCHMARKS.md")
    args = parser.parse_args(argv)
    seeds = tuple(int(seed) for seed in args.seeds.split(",") if seed.strip())

    registry = collect(get_plugin_manager())
    notes: list[str] = []
    specs = []
    for name in (n.strip() for n in args.models.split(",") if n.strip()):
        if name in registry.algorithms:
            specs.append(ModelSpec(name, registry.algorithms[name]))
        else:
            notes.append(f"- `{name}`: not registered in this checkout, not measured")
    peers: set[str] = set()
    for name in (n.strip() for n in args.peers.split(",") if n.strip()):
        try:
            specs.append(ModelSpec(name, peer(name)))
            peers.add(name)
        except Exception as error:  # any failure is reported, and the rest runs
            notes.append(f"- peer `{name}` not measured: {type(error).__name__}: {error}")
    for note in notes:
        print(note)

    snapshot = open_dataset(args.directory)
    started = time.perf_counter()
    texts = _timed(text_provider_for(registry, snapshot.item_properties, snapshot.n_items))
    texts(embedder="minilm")  # embedded once, before the models' clocks start
    evaluations = {
        "cold-items": evaluate(
            snapshot,
            specs,
            Protocol(name="cold-items", ks=(10,), seeds=seeds),
            progress=not args.no_progress,
            item_text_vectors=texts,
        ),
        "cold-users": evaluate(
            snapshot,
            specs,
            Protocol(
                name="cold-users",
                ks=(10,),
                seeds=seeds,
                cold_user_interactions=args.cold_user_interactions,
            ),
            progress=not args.no_progress,
            item_text_vectors=texts,
        ),
    }
    wall = time.perf_counter() - started
    items, users = evaluations["cold-items"].splits[0], evaluations["cold-users"].splits[0]
    data = evaluations["cold-items"].dataset
    found = versions()
    for package in ("lightfm", "pytorch-widedeep", "sentence-transformers"):
        found[package] = _version(package)
    lines = [
        f"- MovieLens-100K ({data['users']:,} users, {data['items']:,} items, "
        f"{data['interactions']:,} ratings, each a positive of weight 1), loaded as "
        "`reqo dataset load ml-100k` loads it; seeds "
        f"{', '.join(map(str, seeds))} (mean ± sample std over seeds)",
        f"- cold-items: 10 % of the items held out with all their interactions "
        f"({items.sizes['test']:,} test interactions, {items.test_users:,} test users, seed "
        f"{items.seed}); each user's cold items ranked among the cold items",
        f"- cold-users: 10 % of the users keep their first {args.cold_user_interactions} "
        f"interactions in train ({users.test_users:,} test users, "
        f"{users.sizes['test']:,} test interactions); ranked among all items but the user's "
        "train items; the users' properties (age, gender, occupation, zip) given to the models",
        "- models with their default parameters; content-knn, attribute-ridge, wide-deep and "
        "content-mf on MiniLM text vectors of the items' string and set properties (title, "
        "genres, IMDb URL), embedded once "
        f"({TEXT_SECONDS[0]:.1f} s, not counted in train s); peers as reqo algorithms through "
        "the same harness, given the same attributes (genres and release year in 10 quantile "
        "bins; gender, occupation, age in 10 bins; ids of warm users and items), without the "
        "text; equal scores ordered by a seeded shuffle",
        "",
        *table(evaluations, peers),
        "",
        *verdicts(evaluations, peers),
        *notes,
        f"- whole run {wall:.0f} s; "
        + ", ".join(f"{name} {version}" for name, version in found.items() if version),
    ]
    if args.no_report:
        print("\n".join(lines))
    else:
        publish(
            "Cold start: MovieLens-100K, new items and new users", "bench.cold_start", argv, lines
        )
    return 0


TEXT_SECONDS = [0.0]
"""Seconds spent embedding the item texts (the first call of the provider)."""


def _timed(provider: ItemTextVectorProvider) -> ItemTextVectorProvider:
    """The provider, each embedder's vectors computed once for both protocols, the time it
    took in TEXT_SECONDS."""
    known: dict[str, ItemEmbeddings] = {}

    def provide(*, embedder: str) -> ItemEmbeddings:
        if embedder not in known:
            started = time.perf_counter()
            known[embedder] = provider(embedder=embedder)
            TEXT_SECONDS[0] += time.perf_counter() - started
        return known[embedder]

    return provide


def _version(package: str) -> str | None:
    import importlib.metadata

    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


if __name__ == "__main__":
    sys.exit(main())

"""The cold-start peers of bench.cold_start, wrapped as reqo algorithms so that the harness
splits, scores and measures them exactly as it does reqo's models.

- `lightfm`: LightFM 1.17 (PyPI `lightfm`, the `reference` extra) with item features (identity,
  genres, release-year bin: `bins` quantile bins, attribute-ridge's 10 by default) and user
  features (identity, gender, occupation, age bin), WARP
  loss. A user or item without training interactions is represented by its attribute features
  alone (its identity feature is left out: it was never trained), as LightFM's paper does for
  cold start.
- `pytorch-widedeep`: pytorch-widedeep 1.7's WideDeep, a Wide (linear) part and a TabMlp deep
  part (an embedding per categorical column, an MLP) over the same columns of a (user, item)
  pair: user id, gender, occupation, age bin; item id, one 0/1 column per genre, release-year
  bin. Trained with its Trainer as binary classification of the train interactions against 4
  seeded uniform negatives each (warm items the user has not interacted with); scores are the
  logits. A user or item without training interactions gets the unknown id (0, the padding
  index: no id weight, a zero id embedding), as LightFM leaves out its identity feature.

Only for the benchmark: not registered as a plugin (nothing in reqo imports lightfm or
pytorch_widedeep).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import scipy.sparse as sp

from plugins.algorithm import Algorithm, Parameter, UserHistory
from plugins.builtin.attribute_ridge import AttributeRidge
from plugins.builtin.baselines import Attributes, property_keys
from plugins.training import TrainingData

BINS = next(p.default for p in AttributeRidge.parameters if p.name == "bins")
"""Quantile bins of the numbers: attribute-ridge's, so that every model sees the same columns."""
SHARED = (
    Parameter("bins", int, BINS, "quantile bins of a number (the release year, the age)", 2),
    Parameter("seed", int, 0, "the generator's seed"),
)
"""The parameters both peers take."""


class LightFMPeer(Algorithm):
    """LightFM with item and user features (hybrid matrix factorisation)."""

    name = "lightfm"
    description = "LightFM 1.17 with item/user features (WARP), a reference peer"
    parameters = (
        Parameter("components", int, 64, "latent dimensions", minimum=1),
        Parameter("epochs", int, 20, "training epochs", minimum=1),
        Parameter("threads", int, 2, "training threads", minimum=1),
        *SHARED,
    )

    def __init__(self, **settings: Any) -> None:
        super().__init__(**settings)
        self.model: Any = None
        self.item_features = sp.csr_matrix((0, 0))
        self.user_keys: dict[str, int] = {}
        self.user_edges: dict[str, np.ndarray[Any, Any]] = {}
        self.n_user_ids = 0
        self.warm_users = np.zeros(0, dtype=bool)

    def fit(self, data: TrainingData) -> None:
        from lightfm import LightFM

        self.n_items = data.n_items
        counts_i = np.bincount(data.items, minlength=data.n_items)
        counts_u = np.bincount(data.users, minlength=data.n_users)
        self.warm_users = counts_u > 0
        items = Attributes.of(data.item_properties, data.n_items, 100, int(self.settings["bins"]))
        users = Attributes.of(data.user_properties, data.n_users, 100, int(self.settings["bins"]))
        self.item_features = _features(items.matrix.tocsr(), counts_i > 0)
        self.user_keys = {key: n for n, key in enumerate(users.keys)}
        self.user_edges = {name: np.asarray(edges) for name, edges in users.edges.items()}
        self.n_user_ids = data.n_users
        user_features = _features(users.matrix.tocsr(), self.warm_users)
        interactions = data.matrix.tocoo()
        interactions.data[:] = 1.0
        self.model = LightFM(
            no_components=int(self.settings["components"]),
            loss="warp",
            random_state=int(self.settings["seed"]),
        )
        self.model.fit(
            interactions,
            user_features=user_features,
            item_features=self.item_features,
            epochs=int(self.settings["epochs"]),
            num_threads=int(self.settings["threads"]),
        )

    def _user_row(self, history: UserHistory) -> sp.csr_matrix:
        """A user's feature row: its identity where it trained, and its property values."""
        columns = []
        user = history.user
        if user is not None and user < len(self.warm_users) and self.warm_users[user]:
            columns.append(user)
        for name, value in history.properties.items():
            for key in property_keys(name, value, self.user_edges.get(name)):
                if key in self.user_keys:
                    columns.append(self.n_user_ids + self.user_keys[key])
        width = self.n_user_ids + len(self.user_keys)
        row = np.zeros(width, dtype=np.float32)
        row[columns] = 1.0
        return sp.csr_matrix(row / max(len(columns), 1))

    def user_scores(self, histories: Sequence[UserHistory]) -> np.ndarray[Any, Any]:
        item_bias, item_vectors = self.model.get_item_representations(self.item_features)
        rows = sp.vstack([self._user_row(history) for history in histories]).tocsr()
        user_bias, user_vectors = self.model.get_user_representations(rows)
        scores = user_vectors @ item_vectors.T + item_bias[None, :] + user_bias[:, None]
        return np.asarray(scores, dtype=np.float32)

    def state(self) -> dict[str, np.ndarray[Any, Any]]:
        raise NotImplementedError("a benchmark peer is not saved")

    def restore(self, arrays: Mapping[str, np.ndarray[Any, Any]]) -> None:
        raise NotImplementedError("a benchmark peer is not saved")


class PyTorchWideDeepPeer(Algorithm):
    """pytorch-widedeep's WideDeep: a Wide (linear) part and a TabMlp (embeddings and an MLP)
    over the same categorical columns of a (user, item) pair, trained as binary classification
    of the interactions against sampled negatives."""

    name = "pytorch-widedeep"
    description = "pytorch-widedeep 1.7 WideDeep (Wide + TabMlp) on ids and attributes, a peer"
    relevance_threshold = None  # logits, of either sign
    parameters = (
        Parameter("embedding", int, 16, "embedding size of an attribute column", minimum=1),
        Parameter("id_embedding", int, 32, "embedding size of the user and item ids", minimum=1),
        Parameter("negatives", int, 4, "sampled negatives per interaction", minimum=1),
        Parameter("epochs", int, 5, "training epochs", minimum=1),
        Parameter("batch_size", int, 2048, "training batch size", minimum=1),
        Parameter("learning_rate", float, 3e-3, "Adam's learning rate", minimum=0.0),
        *SHARED,
    )

    def __init__(self, **settings: Any) -> None:
        super().__init__(**settings)
        self.model: Any = None
        self.items = np.zeros((0, 0), dtype=np.int64)
        self.user_columns = 0
        self.user_codes: dict[str, tuple[int, int]] = {}
        self.user_edges: dict[str, np.ndarray[Any, Any]] = {}
        self.warm_users = np.zeros(0, dtype=bool)
        self.offsets = np.zeros(0, dtype=np.int64)

    def fit(self, data: TrainingData) -> None:
        import torch

        torchvision_without_ops()
        from pytorch_widedeep import Trainer
        from pytorch_widedeep.dataloaders import CustomDataLoader
        from pytorch_widedeep.models import TabMlp, Wide, WideDeep
        from torch.utils.data import BatchSampler, RandomSampler

        seed = int(self.settings["seed"])
        torch.manual_seed(seed)
        self.n_items = data.n_items
        counts_i = np.bincount(data.items, minlength=data.n_items)
        counts_u = np.bincount(data.users, minlength=data.n_users)
        self.warm_users = counts_u > 0
        items = Attributes.of(data.item_properties, data.n_items, 100, int(self.settings["bins"]))
        users = Attributes.of(data.user_properties, data.n_users, 100, int(self.settings["bins"]))
        user_table, user_sizes, self.user_codes = _columns(users, counts_u > 0)
        self.items, item_sizes, _ = _columns(items, counts_i > 0)
        self.user_edges = {name: np.asarray(edges) for name, edges in users.edges.items()}
        self.user_columns = user_table.shape[1]
        sizes = user_sizes + item_sizes
        self.offsets = np.cumsum([0, *sizes[:-1]]).astype(np.int64)

        matrix = data.matrix.tocsr()
        matrix.sum_duplicates()
        positive_users = np.repeat(np.arange(matrix.shape[0]), np.diff(matrix.indptr))
        positive_items = matrix.indices.astype(np.int64)
        generator = np.random.default_rng(seed)
        negatives = int(self.settings["negatives"])
        negative_users = np.repeat(positive_users, negatives)
        warm_items = np.flatnonzero(counts_i > 0)
        negative_items = warm_items[generator.integers(0, len(warm_items), len(negative_users))]
        known = positive_users * data.n_items + positive_items
        fresh = ~np.isin(negative_users * data.n_items + negative_items, known)
        pair_users = np.concatenate([positive_users, negative_users[fresh]])
        pair_items = np.concatenate([positive_items, negative_items[fresh]])
        target = np.concatenate([np.ones(len(positive_users)), np.zeros(int(fresh.sum()))])
        tab = np.hstack([user_table[pair_users], self.items[pair_items]])

        names = [f"c{n}" for n in range(len(sizes))]
        dims = [int(self.settings["embedding"])] * len(sizes)
        dims[0] = dims[self.user_columns] = int(self.settings["id_embedding"])
        deep = TabMlp(
            column_idx={name: n for n, name in enumerate(names)},
            cat_embed_input=list(zip(names, sizes, dims, strict=True)),
            mlp_hidden_dims=[128, 64],
        )
        self.model = WideDeep(wide=Wide(input_dim=int(sum(sizes)), pred_dim=1), deeptabular=deep)
        trainer = Trainer(
            self.model,
            objective="binary",
            optimizers=torch.optim.Adam(
                self.model.parameters(), lr=float(self.settings["learning_rate"])
            ),
            verbose=0,
            seed=seed,
            num_workers=0,
        )
        # Whole shuffled batches at once: the default DataLoader fetches the rows one by one
        # (most of an epoch's time) and in their order (positives first) unless told.
        batches = BatchSampler(
            RandomSampler(range(len(target)), generator=torch.Generator().manual_seed(seed)),
            int(self.settings["batch_size"]),
            drop_last=False,
        )
        trainer.fit(
            X_wide=self._wide(tab),
            X_tab=tab,
            target=target,
            n_epochs=int(self.settings["epochs"]),
            train_dataloader=CustomDataLoader(batch_size=None, sampler=batches),
        )
        self.model.eval()

    def _wide(self, tab: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
        """The Wide part's input: each column's codes moved into one index space (0 stays 0,
        the padding: no value)."""
        return np.where(tab > 0, tab + self.offsets[None, :], 0)

    def _user_row(self, history: UserHistory) -> np.ndarray[Any, Any]:
        """A user's codes: its id where it trained (else 0, unknown), and its property values."""
        row = np.zeros(self.user_columns, dtype=np.int64)
        user = history.user
        if user is not None and user < len(self.warm_users) and self.warm_users[user]:
            row[0] = user + 1
        for name, value in history.properties.items():
            for key in property_keys(name, value, self.user_edges.get(name)):
                if key in self.user_codes:
                    column, code = self.user_codes[key]
                    row[column] = code
        return row

    def user_scores(self, histories: Sequence[UserHistory]) -> np.ndarray[Any, Any]:
        import torch

        scores = np.zeros((len(histories), self.n_items), dtype=np.float32)
        if not histories:
            return scores
        users = np.stack([self._user_row(history) for history in histories])
        step = max(1, (1 << 17) // max(self.n_items, 1))
        with torch.no_grad():
            for start in range(0, len(users), step):
                chunk = users[start : start + step]
                tab = np.hstack(
                    [np.repeat(chunk, self.n_items, axis=0), np.tile(self.items, (len(chunk), 1))]
                )
                logits = self.model(
                    {
                        "wide": torch.from_numpy(self._wide(tab)),
                        "deeptabular": torch.from_numpy(tab.astype(np.float32)),
                    }
                )
                scores[start : start + len(chunk)] = logits.numpy().reshape(len(chunk), -1)
        return scores

    def state(self) -> dict[str, np.ndarray[Any, Any]]:
        raise NotImplementedError("a benchmark peer is not saved")

    def restore(self, arrays: Mapping[str, np.ndarray[Any, Any]]) -> None:
        raise NotImplementedError("a benchmark peer is not saved")


def _columns(
    attributes: Attributes, warm: np.ndarray[Any, Any]
) -> tuple[np.ndarray[Any, Any], list[int], dict[str, tuple[int, int]]]:
    """An entity's categorical columns for pytorch-widedeep: rows x columns of codes (0: no
    value), each column's number of codes, and each attribute key's (column, code).

    The first column is the id (row + 1 for a warm row, 0 for a cold one: unknown); then one
    column per single-valued property (a value's code is its place among the property's
    values + 1) and one 0/1 column per value of a set property (genres)."""
    matrix = attributes.matrix.tocsc()
    n_rows = matrix.shape[0]
    columns = [np.where(warm, np.arange(1, n_rows + 1), 0)]
    sizes = [n_rows]
    codes: dict[str, tuple[int, int]] = {}
    for owner in np.unique(attributes.owners):
        keys = np.flatnonzero(attributes.owners == owner)
        part = matrix[:, keys].tocsr()
        if part.getnnz(axis=1).max(initial=0) <= 1:
            for code, key in enumerate(keys, start=1):
                codes[attributes.keys[key]] = (len(columns), code)
            columns.append(np.asarray(part @ np.arange(1, len(keys) + 1)).ravel())
            sizes.append(len(keys))
            continue
        for n, key in enumerate(keys):
            codes[attributes.keys[key]] = (len(columns), 1)
            columns.append(part[:, n].toarray().ravel())
            sizes.append(1)
    return np.stack(columns, axis=1).astype(np.int64), sizes, codes


_TORCHVISION_OPS: list[Any] = []
"""The torch library fragment that torchvision_without_ops defined, kept alive."""


def torchvision_without_ops() -> None:
    """Lets `import torchvision` (which pytorch-widedeep imports throughout) work beside a CPU
    build of torch when torchvision's compiled operators cannot load.

    The registry's Linux torchvision wheels are built against CUDA torch: their `_C` extension
    needs libtorch_cuda, which the CPU torch lacks. torchvision then goes on without its
    operators (nms, roi_align, ...; none of which WideDeep on tabular data uses), except that
    `torchvision._meta_registrations` registers fake kernels for `torchvision::nms` and
    `torchvision::qnms` whether or not they exist, and fails. Defining the two schemas first
    (only where the extension does not load) lets the import through."""
    import importlib.util
    import sys
    from pathlib import Path

    if "torchvision" in sys.modules or _TORCHVISION_OPS:
        return
    spec = importlib.util.find_spec("torchvision")
    if spec is None or not spec.submodule_search_locations:
        return  # the import fails with its own error
    import torch

    for folder in spec.submodule_search_locations:
        for path in Path(folder).glob("_C.*"):
            try:
                torch.ops.load_library(str(path))  # type: ignore[no-untyped-call]
            except (OSError, RuntimeError):
                continue
            return  # the real operators
    library = torch.library.Library("torchvision", "DEF")  # type: ignore[no-untyped-call]
    library.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")  # type: ignore[no-untyped-call]
    library.define("qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")  # type: ignore[no-untyped-call]
    _TORCHVISION_OPS.append(library)


def _features(attributes: sp.csr_matrix, warm: np.ndarray[Any, Any]) -> sp.csr_matrix:
    """[identity (warm rows only) | attribute values], each row normalised to sum 1."""
    n = attributes.shape[0]
    identity = sp.diags(warm.astype(np.float32), shape=(n, n), format="csr")
    features = sp.hstack([identity, attributes.astype(np.float32)]).tocsr()
    sums = np.asarray(features.sum(axis=1)).ravel()
    scale = sp.diags(1.0 / np.maximum(sums, 1.0))
    return (scale @ features).tocsr().astype(np.float32)

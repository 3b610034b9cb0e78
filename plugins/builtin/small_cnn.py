"""A small CNN trained on the catalog's own images: the `small-cnn` embedder.

Three convolution blocks and a 128-d embedding layer, trained supervised (cross-entropy of a
linear head on top of the embedding) on the catalog's images with a category property as the
labels. The embedding is the penultimate layer, the input of the head: the network learns to
pull items of one category together, which an ImageNet network, trained on photographs of other
things, does not know to do for a catalog such as Fashion-MNIST's 28x28 grayscale products.

Unlike the pretrained embedders it must be fitted first (`fit`); its weights are plain arrays
(`state` / `restore`, no pickle), and a digest of them is part of its cache `key`, so vectors of
one training are never served for another.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, Self

import numpy as np
import numpy.typing as npt
from PIL import Image

from plugins.algorithm import Parameter
from plugins.builtin.image_embedders import square_rgb
from plugins.embedders import DEVICE, Embedder, EmbedderKey, resolve_device
from plugins.hookspecs import hookimpl

if TYPE_CHECKING:
    import torch

EMBEDDING_SIZE = 128
CLASSES_KEY = "classes"
"""The entry of `state` that holds the label of each output of the head (as strings)."""
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)  # ITU-R 601-2, as PIL's "L"


class NotFittedError(RuntimeError):
    """The small CNN was asked for vectors before it was fitted or restored."""


def _network(channels: int, width: int, classes: int) -> torch.nn.ModuleDict:
    """The network: features (three conv blocks, global average pool) -> embedding -> head."""
    from torch import nn

    def block(inputs: int, outputs: int, pool: bool) -> list[nn.Module]:
        layers: list[nn.Module] = [
            nn.Conv2d(inputs, outputs, 3, padding=1, bias=False),
            nn.BatchNorm2d(outputs),
            nn.ReLU(inplace=True),
        ]
        return [*layers, nn.MaxPool2d(2)] if pool else layers

    return nn.ModuleDict(
        {
            "features": nn.Sequential(
                *block(channels, width, True),
                *block(width, 2 * width, True),
                *block(2 * width, 4 * width, False),
                nn.AdaptiveAvgPool2d(1),
                nn.Flatten(),
            ),
            "embedding": nn.Sequential(nn.Linear(4 * width, EMBEDDING_SIZE), nn.ReLU()),
            "head": nn.Linear(EMBEDDING_SIZE, classes),
        }
    )


class SmallCNN(Embedder):
    name = "small-cnn"
    description = (
        "a small CNN trained on the catalog's own images with their category labels: the "
        "128-d layer before the classifier"
    )
    parameters = (
        Parameter("image_size", int, 28, "side of the square input", 8, 256),
        Parameter("grayscale", bool, True, "one channel (luminance) instead of RGB"),
        Parameter("width", int, 32, "channels of the first block (doubled in each next)", 4, 256),
        Parameter("epochs", int, 5, "passes over the training images", 1, 1000),
        Parameter("batch_size", int, 128, "images per training step", 1, 65536),
        Parameter("learning_rate", float, 0.005, "Adam's step size", 1e-6, 1.0),
        Parameter("seed", int, 0, "seeds the initial weights and the order of the batches"),
        Parameter(
            "label_property",
            str,
            "category",
            "the item property whose values are the classes it learns to tell apart",
        ),
        DEVICE,
    )
    trainable: ClassVar[bool] = True

    def __init__(self, **settings: Any) -> None:
        super().__init__(**settings)
        self._model: Any = None
        self._classes: tuple[str, ...] = ()
        self._digest = ""

    @property
    def dimensions(self) -> int:
        return EMBEDDING_SIZE

    @property
    def fitted(self) -> bool:
        return self._model is not None

    @property
    def classes(self) -> tuple[str, ...]:
        """The labels the head tells apart, in the order of its outputs."""
        return self._classes

    @property
    def key(self) -> EmbedderKey:
        """The settings' key with a digest of the weights: another training, other vectors."""
        base = super().key
        return EmbedderKey(base.name, f"{base.settings_digest}-{self._digest or 'unfitted'}")

    def preprocess(self, images: Sequence[Image.Image]) -> np.ndarray[Any, Any]:
        """The network's input: (n, channels, size, size), centred around zero."""
        size = int(self.settings["image_size"])
        batch = np.stack([square_rgb(image, size) for image in images])
        if self.settings["grayscale"]:
            batch = (batch @ _LUMA)[..., None]
        # Centred, so that the first layer starts from inputs of either sign; batch norm does
        # the rest.
        return np.ascontiguousarray((batch - np.float32(0.5)).transpose(0, 3, 1, 2))

    # -- training --------------------------------------------------------------------------------

    def fit(
        self,
        images: Sequence[Image.Image],
        labels: Sequence[Any] | npt.NDArray[Any],
        epochs: int | None = None,
        seed: int | None = None,
        progress: bool = False,
    ) -> Self:
        """Train on the images with their labels (any values; compared as strings); `epochs` and
        `seed` override the settings. The same seed, data and thread count give the same
        weights on the CPU."""
        if len(images) != len(labels):
            raise ValueError(f"{len(images)} images but {len(labels)} labels")
        return self.fit_arrays(
            self.preprocess(images), labels, epochs=epochs, seed=seed, progress=progress
        )

    def fit_arrays(
        self,
        inputs: np.ndarray[Any, Any],
        labels: Sequence[Any] | np.ndarray[Any, Any],
        *,
        progress: bool = False,
        epochs: int | None = None,
        seed: int | None = None,
    ) -> Self:
        """`fit` on inputs preprocessed already (`preprocess`), to preprocess a catalog once."""
        import torch
        from tqdm import tqdm

        names = np.asarray([str(label) for label in labels])
        classes, targets = np.unique(names, return_inverse=True)
        if len(classes) < 2:
            raise ValueError(
                f"small-cnn needs at least two classes to learn from, found {len(classes)}"
            )
        epochs = int(self.settings["epochs"] if epochs is None else epochs)
        seed = int(self.settings["seed"] if seed is None else seed)
        device = resolve_device(self.settings["device"])
        batch_size = int(self.settings["batch_size"])

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = _network(inputs.shape[1], int(self.settings["width"]), len(classes))
        model.to(device).train()
        optimiser = torch.optim.Adam(model.parameters(), lr=float(self.settings["learning_rate"]))
        x = torch.from_numpy(np.ascontiguousarray(inputs, dtype=np.float32))
        y = torch.from_numpy(targets.astype(np.int64))
        order = np.random.default_rng(seed)
        loss_function = torch.nn.CrossEntropyLoss()
        for _ in tqdm(range(epochs), desc="small-cnn", unit="epoch", disable=not progress):
            permutation = torch.from_numpy(order.permutation(len(y)))
            for start in range(0, len(y), batch_size):
                chosen = permutation[start : start + batch_size]
                if len(chosen) < 2:
                    continue  # batch norm needs two samples; one image left over is skipped
                optimiser.zero_grad(set_to_none=True)
                logits = model["head"](model["embedding"](model["features"](x[chosen].to(device))))
                loss_function(logits, y[chosen].to(device)).backward()
                optimiser.step()
        self._model = model.eval()
        self._classes = tuple(str(c) for c in classes)
        self._digest = _digest(self.state())
        return self

    # -- embedding -------------------------------------------------------------------------------

    def _embed(self, images: Sequence[Image.Image]) -> np.ndarray[Any, Any]:
        return self.embed_arrays(self.preprocess(images))

    def embed_arrays(self, inputs: np.ndarray[Any, Any]) -> npt.NDArray[np.float32]:
        """The raw (not normalised) embeddings of preprocessed inputs."""
        import torch

        if self._model is None:
            raise NotFittedError("small-cnn has not been fitted: call fit or restore first")
        device = next(self._model.parameters()).device
        with torch.inference_mode():
            batch = torch.from_numpy(np.ascontiguousarray(inputs, dtype=np.float32)).to(device)
            vectors = self._model["embedding"](self._model["features"](batch))
        result: npt.NDArray[np.float32] = vectors.float().cpu().numpy()
        return result

    def predict(self, images: Sequence[Image.Image]) -> list[str]:
        """The class the head gives each image (to check what the network learned)."""
        import torch

        if self._model is None:
            raise NotFittedError("small-cnn has not been fitted: call fit or restore first")
        device = next(self._model.parameters()).device
        with torch.inference_mode():
            embedded = torch.from_numpy(self.embed_arrays(self.preprocess(images))).to(device)
            outputs = self._model["head"](embedded).argmax(dim=1).cpu().numpy()
        return [self._classes[int(i)] for i in outputs]

    # -- state -----------------------------------------------------------------------------------

    def state(self) -> dict[str, np.ndarray[Any, Any]]:
        """The weights as plain arrays (parameter name -> array) and the class labels under
        `classes`: what `restore` takes, to be saved with numpy (no pickle)."""
        if self._model is None:
            raise NotFittedError("small-cnn has not been fitted: there is no state to save")
        arrays = {
            name: tensor.detach().cpu().numpy().copy()
            for name, tensor in self._model.state_dict().items()
        }
        arrays[CLASSES_KEY] = np.asarray(self._classes, dtype=np.str_)
        return arrays

    def restore(self, state: Mapping[str, np.ndarray[Any, Any]]) -> Self:
        """Load weights saved by `state`; ValueError says what does not fit these settings."""
        import torch

        if CLASSES_KEY not in state:
            raise ValueError(f"small-cnn state lacks '{CLASSES_KEY}'")
        classes = tuple(str(c) for c in np.asarray(state[CLASSES_KEY]).tolist())
        channels = 1 if self.settings["grayscale"] else 3
        model = _network(channels, int(self.settings["width"]), len(classes))
        expected = model.state_dict()
        given = {k: v for k, v in state.items() if k != CLASSES_KEY}
        if set(given) != set(expected):
            missing = sorted(set(expected) - set(given))
            extra = sorted(set(given) - set(expected))
            raise ValueError(
                f"small-cnn state does not fit these settings: missing {missing}, extra {extra}"
            )
        for name, array in given.items():
            if tuple(array.shape) != tuple(expected[name].shape):
                raise ValueError(
                    f"small-cnn state: '{name}' has shape {tuple(array.shape)}, these settings "
                    f"need {tuple(expected[name].shape)}"
                )
        model.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in given.items()})
        self._model = model.to(resolve_device(self.settings["device"])).eval()
        self._classes = classes
        self._digest = _digest(self.state())
        return self


def _digest(state: Mapping[str, np.ndarray[Any, Any]]) -> str:
    """A short digest of the weights and classes, in name order."""
    hasher = hashlib.sha256()
    for name in sorted(state):
        hasher.update(name.encode())
        hasher.update(np.ascontiguousarray(state[name]).tobytes())
    return hasher.hexdigest()[:16]


@hookimpl
def register_embedders() -> list[type[Embedder]]:
    return [SmallCNN]

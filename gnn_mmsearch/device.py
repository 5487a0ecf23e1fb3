"""Where a job's tensors live: ``device=auto|cpu|cuda|cuda:N``, resolved once per job.

``auto`` picks CUDA when it is available, else the CPU; under ``torchrun`` ``auto`` and ``cuda`` mean the GPU of the
process's ``LOCAL_RANK``. Anything else (``tpu``, ``cuda`` on a machine without CUDA, ``cuda:3`` on a two-GPU
machine) is a one-line ``ValueError``.
"""
from __future__ import annotations

import os

import torch

DEVICES = "auto, cpu, cuda or cuda:N"
PRECISIONS = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def resolve_device(spec: str | torch.device = "auto", key: str = "device") -> torch.device:
    """The ``torch.device`` that ``spec`` names on this machine (``key``: the config key named in errors)."""
    if isinstance(spec, torch.device):
        spec = str(spec)
    name = str(spec).strip().lower()
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cpu":
        return torch.device("cpu")
    kind, _, index = name.partition(":")
    if kind != "cuda" or (index and not index.isdigit()):
        raise ValueError(f"{key}={spec!r} is not a device: choose {DEVICES}")
    if not torch.cuda.is_available():
        why = "this torch build has no CUDA" if torch.version.cuda is None else "no CUDA GPU is visible"
        raise ValueError(f"{key}={spec!r} but {why}: use {key}=cpu or {key}=auto")
    n = torch.cuda.device_count()
    gpu = int(index) if index else int(os.environ.get("LOCAL_RANK", torch.cuda.current_device()))
    if gpu >= n:
        raise ValueError(f"{key}={spec!r}: GPU {gpu} asked for, but {n} CUDA device(s) are visible")
    return torch.device("cuda", gpu)


def autocast(device: torch.device, precision: str = "fp32"):
    """A ``torch.autocast`` context for ``precision`` (fp16 | bf16) on ``device``; fp32 is a no-op context."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    return torch.autocast(device.type, dtype=PRECISIONS[precision], enabled=precision != "fp32")

"""Keyframes of a short video (PyAV): a bounded number of frames evenly spread over the clip.

A video query is the mean of its keyframes' image features, then served exactly as an image query.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

VIDEO_FRAMES = 8  # keyframes sampled from a query video unless told otherwise


def keyframes(path: str | Path, count: int | None = None) -> list[Image.Image]:
    """Up to ``count`` (default ``VIDEO_FRAMES``) RGB frames of the first video stream of ``path``, evenly spread from the first frame to the
    last. A missing, corrupt or empty video raises ``ValueError`` (one line)."""
    import av

    count = VIDEO_FRAMES if count is None else count
    if count < 1:
        raise ValueError(f"the number of video frames must be at least 1, got {count}")
    try:
        with av.open(str(path)) as container:  # first pass: count the frames without decoding them
            total = sum(1 for packet in container.demux(video=0) if packet.size)
        wanted = set(np.linspace(0, total - 1, min(count, total)).round().astype(int).tolist()) if total else set()
        frames = []
        with av.open(str(path)) as container:
            for i, frame in enumerate(container.decode(video=0)):
                if i in wanted:
                    frames.append(frame.to_image().convert("RGB"))
                if i >= max(wanted, default=-1):
                    break
    except (av.FFmpegError, OSError, IndexError) as err:  # IndexError: no video stream
        reason = "no video stream" if isinstance(err, IndexError) else getattr(err, "strerror", None) or err
        raise ValueError(f"cannot read query video {path}: {reason}") from None
    if not frames:
        raise ValueError(f"cannot read query video {path}: no frame decodes")
    return frames

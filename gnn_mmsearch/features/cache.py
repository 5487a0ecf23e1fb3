"""On-disk content-keyed feature cache, one directory per encoder config.

Layout::

    <root>/<sha256(config json)[:16]>/config.json
    <root>/<sha256(config json)[:16]>/shard-<time_ns>-<rand>.npz     keys [n] str, vectors [n, dim] f32, ok [n] bool

Shards are append-only and written atomically (temp file + ``os.replace``), so concurrent or interrupted
runs never leave a half-written shard behind. Failed extractions are stored with ``ok=False`` so they are
not retried; keys are content hashes, so a fixed file gets a new key and is extracted again.
"""
from __future__ import annotations

import hashlib
import io
import json
import logging
import time
import uuid
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from .._atomic import atomic_write

log = logging.getLogger(__name__)

_CHUNK = 1 << 20


def config_hash(config: Mapping) -> str:
    """Short stable hash of a JSON-serialisable config."""
    return hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:16]


def text_key(text: str) -> str:
    """Cache key of a text: sha256 of its UTF-8 bytes."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def file_key(path: Path) -> str:
    """Cache key of a file: sha256 of its bytes (raises ``OSError`` when it cannot be read)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


class FeatureCache:
    """Key -> vector store for one encoder ``config`` (which must carry the vector size as ``config["dim"]``)."""

    def __init__(self, root: str | Path, config: Mapping):
        if "dim" not in config:
            raise KeyError("FeatureCache config needs a 'dim' entry")
        self.config = dict(config)
        self.dim = int(config["dim"])
        self.dir = Path(root).expanduser() / config_hash(self.config)
        self.dir.mkdir(parents=True, exist_ok=True)
        config_file = self.dir / "config.json"
        if not config_file.exists():
            atomic_write(config_file, json.dumps(self.config, indent=2, sort_keys=True).encode())

    def __repr__(self) -> str:
        return f"FeatureCache({str(self.dir)!r})"

    def _shards(self) -> list[Path]:
        return sorted(self.dir.glob("shard-*.npz"))

    def lookup(self, keys: Sequence[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(vectors float32 [N, dim], found bool [N], ok bool [N])``; rows not found or not ok are zeros."""
        wanted: dict[str, list[int]] = {}
        for i, key in enumerate(keys):
            wanted.setdefault(key, []).append(i)
        vectors = np.zeros((len(keys), self.dim), dtype=np.float32)
        found = np.zeros(len(keys), dtype=bool)
        ok = np.zeros(len(keys), dtype=bool)
        for shard in self._shards():  # sorted oldest first: later shards win
            try:
                with np.load(shard, allow_pickle=False) as z:
                    shard_keys, shard_vectors, shard_ok = z["keys"], z["vectors"], z["ok"]
            except (OSError, ValueError, KeyError) as err:
                log.warning("ignoring unreadable cache shard %s: %s", shard, err)
                continue
            for j, key in enumerate(shard_keys.tolist()):
                for i in wanted.get(key, ()):
                    found[i] = True
                    ok[i] = shard_ok[j]
                    vectors[i] = shard_vectors[j] if shard_ok[j] else 0.0
        return vectors, found, ok

    def store(self, keys: Sequence[str], vectors: np.ndarray, ok: np.ndarray) -> None:
        """Add entries (``ok=False``: extraction failed, remembered so it is not retried)."""
        if not len(keys):
            return
        vectors = np.asarray(vectors, dtype=np.float32)
        ok = np.asarray(ok, dtype=bool)
        if vectors.shape != (len(keys), self.dim) or ok.shape != (len(keys),):
            raise ValueError(f"store: {len(keys)} keys, vectors {vectors.shape}, ok {ok.shape}, dim {self.dim}")
        buf = io.BytesIO()
        np.savez(buf, keys=np.asarray(keys, dtype=str), vectors=np.where(ok[:, None], vectors, np.float32(0)), ok=ok)
        atomic_write(self.dir / f"shard-{time.time_ns()}-{uuid.uuid4().hex[:8]}.npz", buf.getvalue())

"""Index files: a single-file container written atomically, and file-backed row storage.

Container layout (little-endian)::

    MAGIC (8 bytes) | u64 header length | header JSON | padding | sections, each 64-byte aligned

The header holds ``format_version``, the index ``kind``, ``dim``, ``metric``, ``count``, constructor ``params`` and a
section table (``type``: array/json/blob, ``offset`` relative to the data start, ``nbytes``, array ``dtype``/``shape``).
:func:`write` writes into a temporary sibling, fsyncs it and ``os.replace``-s it onto the target, so a crash at any
point leaves either the previous file or the new one, never a mix.
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import struct
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Iterator, Union

import numpy as np

from .._atomic import atomic_file

log = logging.getLogger(__name__)

MAGIC = b"GMMSIDX\n"
FORMAT_VERSION = 1
ALIGN = 64
_COPY_CHUNK = 1 << 22
_MAX_HEADER = 1 << 24


@dataclass(frozen=True)
class RawFile:
    """Section payload copied from the start of a file (path or open binary file); an array if ``dtype``/``shape``."""

    source: Path | BinaryIO
    nbytes: int
    dtype: str | None = None
    shape: tuple[int, ...] | None = None


Section = Union[np.ndarray, RawFile, list, dict]


def _align(n: int) -> int:
    return -(-n // ALIGN) * ALIGN


def _describe(value: Section) -> dict:
    if isinstance(value, np.ndarray):
        return {"type": "array", "dtype": value.dtype.str, "shape": list(value.shape), "nbytes": value.nbytes}
    if isinstance(value, RawFile):
        if value.dtype is None:
            return {"type": "blob", "nbytes": value.nbytes}
        return {"type": "array", "dtype": np.dtype(value.dtype).str, "shape": list(value.shape), "nbytes": value.nbytes}
    return {"type": "json", "nbytes": len(_json_bytes(value))}


def _json_bytes(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def _copy_range(src: Path | BinaryIO, offset: int, nbytes: int, dst: BinaryIO) -> None:
    with contextlib.ExitStack() as stack:
        f = src if hasattr(src, "read") else stack.enter_context(open(src, "rb"))
        f.seek(offset)
        left = nbytes
        while left:
            chunk = f.read(min(left, _COPY_CHUNK))
            if not chunk:
                raise OSError(f"{src} ended {left} bytes early")
            dst.write(chunk)
            left -= len(chunk)


def _write_section(f, value: Section) -> None:
    """Write one section payload at the current position of ``f``."""
    if isinstance(value, np.ndarray):
        flat = np.ascontiguousarray(value).reshape(-1).view(np.uint8)
        for start in range(0, flat.size, _COPY_CHUNK):
            f.write(flat[start:start + _COPY_CHUNK])
    elif isinstance(value, RawFile):
        _copy_range(value.source, 0, value.nbytes, f)
    else:
        f.write(_json_bytes(value))


def _fsync_dir(directory: Path) -> None:
    with contextlib.suppress(OSError):  # not every platform/filesystem allows fsync on a directory
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def write(path: str | Path, header: dict, sections: dict[str, Section]) -> None:
    """Atomically write a container with ``header`` (JSON-able) and named ``sections`` to ``path``."""
    path = Path(path)
    table, offset = {}, 0
    for name, value in sections.items():
        entry = _describe(value)
        entry["offset"] = offset = _align(offset)
        offset += entry["nbytes"]
        table[name] = entry
    head = _json_bytes({**header, "format_version": FORMAT_VERSION, "sections": table})
    data_start = _align(len(MAGIC) + 8 + len(head))
    with atomic_file(path, "wb", fsync=True) as f:
        f.write(MAGIC + struct.pack("<Q", len(head)) + head)
        for name, value in sections.items():
            f.write(b"\0" * (data_start + table[name]["offset"] - f.tell()))
            _write_section(f, value)
    _fsync_dir(path.parent)
    log.debug("wrote %s (%d bytes)", path, data_start + offset)


class Reader:
    """Validated read access to a container written by :func:`write`."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        with open(self.path, "rb") as f:
            if f.read(len(MAGIC)) != MAGIC:
                raise ValueError(f"{self.path} is not a gnn_mmsearch index file (bad magic bytes)")
            (n,) = struct.unpack("<Q", f.read(8))
            if n > _MAX_HEADER:
                raise ValueError(f"{self.path}: implausible header length {n}")
            try:
                self.header: dict = json.loads(f.read(n))
            except ValueError as e:
                raise ValueError(f"{self.path}: unreadable header ({e})") from None
        version = self.header.get("format_version")
        if version != FORMAT_VERSION:
            raise ValueError(f"{self.path}: unsupported index format version {version!r} "
                             f"(this code reads {FORMAT_VERSION})")
        self._start = _align(len(MAGIC) + 8 + n)
        self.sections: dict[str, dict] = self.header.get("sections", {})
        end = max((s["offset"] + s["nbytes"] for s in self.sections.values()), default=0)
        size = self.path.stat().st_size
        if size < self._start + end:
            raise ValueError(f"{self.path} is truncated ({size} bytes, header promises {self._start + end})")

    def _entry(self, name: str, kind: str) -> dict:
        entry = self.sections.get(name)
        if entry is None or entry["type"] != kind:
            raise ValueError(f"{self.path}: missing {kind} section {name!r}")
        return entry

    def array(self, name: str, mmap: bool = False) -> np.ndarray:
        """An array section, read into memory or (``mmap=True``) memory-mapped read-only."""
        e = self._entry(name, "array")
        shape, dtype, offset = tuple(e["shape"]), np.dtype(e["dtype"]), self._start + e["offset"]
        if mmap and e["nbytes"]:
            return np.memmap(self.path, dtype=dtype, mode="r", offset=offset, shape=shape)
        count = int(np.prod(shape))
        return np.fromfile(self.path, dtype=dtype, count=count, offset=offset).reshape(shape)

    def json(self, name: str) -> Any:
        e = self._entry(name, "json")
        with open(self.path, "rb") as f:
            f.seek(self._start + e["offset"])
            return json.loads(f.read(e["nbytes"]))

    @contextlib.contextmanager
    def extracted(self, name: str) -> Iterator[Path]:
        """A blob section copied to a temporary sibling file, removed on exit."""
        e = self._entry(name, "blob")
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.", suffix=".part")
        try:
            with os.fdopen(fd, "wb") as f:
                _copy_range(self.path, self._start + e["offset"], e["nbytes"], f)
            yield Path(tmp)
        finally:
            Path(tmp).unlink(missing_ok=True)


@contextlib.contextmanager
def scratch_dir(near: str | Path) -> Iterator[Path]:
    """A temporary directory beside ``near`` (same filesystem), removed on exit."""
    near = Path(near)
    tmp = tempfile.mkdtemp(dir=near.parent, prefix=f".{near.name}.", suffix=".scratch")
    try:
        yield Path(tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


class MappedRows:
    """Growable ``float32 [rows, dim]`` matrix kept in a file and read through a read-only memory map.

    Rows are written with ``os.pwrite`` and read through ``np.memmap``, so they live in the OS page cache (evictable),
    not in the process heap; only pages actually read count towards resident memory. Writes go to an anonymous
    scratch file (``tempfile.TemporaryFile``: no name, gone when closed or the process dies); ``source`` (e.g. a
    memory-mapped section of a saved index) is used read-only until the first write copies it to the scratch file.
    """

    def __init__(self, dim: int, directory: str | Path | None = None, source: np.ndarray | None = None):
        self.dim, self.directory = dim, directory
        self._file: BinaryIO | None = None
        self.array: np.ndarray = np.empty((0, dim), np.float32) if source is None else source
        self._rows = len(self.array)

    @property
    def row_bytes(self) -> int:
        return self.dim * 4

    def _ensure_scratch(self) -> None:
        if self._file is not None:
            return
        self._file = tempfile.TemporaryFile(dir=self.directory, prefix="gnn_mmsearch-rows-")
        _write_section(self._file, self.array)
        self._file.flush()
        self._map()

    def _map(self) -> None:
        if self._rows:
            self.array = np.memmap(self._file, np.float32, "r", shape=(self._rows, self.dim))

    def reserve(self, rows: int) -> None:
        """Make room for at least ``rows`` rows (grows geometrically)."""
        self._ensure_scratch()
        if rows > self._rows:
            self._rows = max(rows, self._rows + self._rows // 2)
            self._file.truncate(self._rows * self.row_bytes)
            self._map()

    def write(self, rows: np.ndarray, values: np.ndarray) -> None:
        """Store ``values[i]`` at row ``rows[i]`` (rows must be reserved and distinct)."""
        self._ensure_scratch()
        order = np.argsort(rows, kind="stable")
        rows, values = rows[order], np.ascontiguousarray(values[order], dtype=np.float32)
        breaks = np.flatnonzero(np.diff(rows) != 1) + 1
        for lo, hi in zip(np.r_[0, breaks], np.r_[breaks, len(rows)]):
            os.pwrite(self._file.fileno(), values[lo:hi].tobytes(), int(rows[lo]) * self.row_bytes)

    def section(self, rows: int) -> Section:
        """The first ``rows`` rows as a container array section."""
        if self._file is None or rows == 0:
            return self.array[:rows]
        return RawFile(self._file, rows * self.row_bytes, "<f4", (rows, self.dim))

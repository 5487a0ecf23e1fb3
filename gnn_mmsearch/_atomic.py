"""Atomic writes: a reader sees the old file or the new one, never half of one, and a failed write leaves nothing.

Everything is written to a temporary name in the target's folder and renamed into place (``os.replace``), with the
permissions a plain ``open`` would give (0644 / 0755 under the usual umask 022), not the temporary file's 0600.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import IO, Callable, Iterator


def _read_umask() -> int:
    mask = os.umask(0)  # the umask can only be read by setting it
    os.umask(mask)
    return mask


_UMASK = _read_umask()


@contextlib.contextmanager
def atomic_file(path: str | Path, mode: str = "wb", fsync: bool = False) -> Iterator[IO]:
    """Open a temporary file beside ``path``; on a clean exit it replaces ``path`` (``fsync``: flushed to disk
    first), on an error it is removed."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, mode, **({} if "b" in mode else {"encoding": "utf-8"})) as f:
            yield f
            if fsync:
                f.flush()
                os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write(path: str | Path, data: bytes | str) -> Path:
    """Write ``data`` (bytes, or text as UTF-8) to ``path`` atomically."""
    with atomic_file(path, "wb") as f:
        f.write(data.encode() if isinstance(data, str) else data)
    return Path(path)


def write_json(path: str | Path, obj) -> Path:
    """Write ``obj`` as indented JSON, atomically."""
    return atomic_write(path, json.dumps(obj, indent=2, sort_keys=True, default=str))


@contextlib.contextmanager
def atomic_directory(path: str | Path) -> Iterator[Path]:
    """A fresh temporary folder beside ``path``; on a clean exit it becomes ``path``, on an error it is removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"))
    try:
        yield tmp
        os.chmod(tmp, 0o777 & ~_UMASK)
        tmp.replace(path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def build_once(path: str | Path, build: Callable[[Path], None], done: str) -> Path:
    """``path``, built first when it lacks the file ``done``: ``build(tmp)`` fills a temporary folder that becomes
    ``path`` (:func:`atomic_directory`); when another process built it first, theirs is kept."""
    path = Path(path)
    if not (path / done).exists():
        try:
            with atomic_directory(path) as tmp:
                build(tmp)
        except OSError:
            if not (path / done).exists():
                raise
    return path

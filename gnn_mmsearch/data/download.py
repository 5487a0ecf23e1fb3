"""Concurrent, resumable product-image download: ``<out>/<id>.jpg`` for each ``(id, url)``.

Each file is written atomically (temp file, then ``os.replace``) and only after its body decodes fully as an
image. Each request (connection, headers and body) must finish within ``timeout`` seconds: the body is read in
chunks against that deadline, so a server that trickles bytes cannot hold a worker. Timeouts, connection errors,
HTTP 5xx and truncated bodies (fewer bytes than ``Content-Length``) are retried with exponential backoff; other HTTP
errors (404, ...), bodies that are not images and images that do not decode to the end fail at once. Files already
on disk (non-empty) are skipped, so an interrupted download resumes where it stopped. Ctrl-C stops the workers
promptly and raises :class:`DownloadInterrupted`, which carries the report of what was done: called from the main
thread, SIGINT only sets a flag the download loop polls, so it never lands inside the executor's locks (a
KeyboardInterrupt raised there can leave a future's lock held and the shutdown waiting forever).
"""
from __future__ import annotations

import csv
import http.client
import io
import logging
import signal
import socket
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from contextlib import contextmanager
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

from PIL import Image
from tqdm.auto import tqdm

from .._atomic import atomic_write
from .amazon import IMAGE_URLS, read_records
from .amazon_formats import META_PARSERS

log = logging.getLogger(__name__)
USER_AGENT = "gnn-mmsearch image downloader"
CHUNK = 64 * 1024
INTERRUPTED = "interrupted"  # the reason of a download cut short by Ctrl-C


class _Retryable(Exception):
    """A failure worth another attempt; ``args[0]`` is the reason."""


class _Fatal(Exception):
    """A failure no retry will fix; ``args[0]`` is the reason."""


@dataclass
class DownloadReport:
    downloaded: int = 0
    skipped: int = 0
    failed: dict[str, int] = field(default_factory=dict)  # reason -> count
    failures: list[dict] = field(default_factory=list)  # {"id", "url", "reason"}
    not_done: int = 0  # left undone when the download was interrupted
    interrupted: bool = False

    def as_dict(self) -> dict:
        return {"downloaded": self.downloaded, "skipped": self.skipped, "failed_total": sum(self.failed.values()),
                "failed": self.failed, "failures": self.failures, "not_done": self.not_done,
                "interrupted": self.interrupted}


class DownloadInterrupted(KeyboardInterrupt):
    """Ctrl-C during :func:`download_images`; ``report`` holds what was done before it."""

    def __init__(self, report: DownloadReport):
        super().__init__("download interrupted")
        self.report = report


def _fetch(url: str, timeout: float, stop: threading.Event) -> bytes:
    """The body of ``url`` within ``timeout`` seconds in all; raises ``_Retryable`` or ``_Fatal`` with a short
    reason (``_Fatal(INTERRUPTED)`` once ``stop`` is set)."""
    deadline = time.monotonic() + timeout
    try:
        request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
        with urllib.request.urlopen(request, timeout=timeout) as response:
            expected = response.headers.get("Content-Length")
            chunks = []
            while chunk := response.read1(CHUNK):
                chunks.append(chunk)
                if stop.is_set():
                    raise _Fatal(INTERRUPTED)
                if time.monotonic() > deadline:
                    raise _Retryable("timeout")
            body = b"".join(chunks)
    except urllib.error.HTTPError as err:
        raise (_Retryable if err.code >= 500 or err.code == 429 else _Fatal)(f"http_{err.code}") from None
    except http.client.IncompleteRead:
        raise _Retryable("truncated") from None
    except (socket.timeout, TimeoutError):
        raise _Retryable("timeout") from None
    except urllib.error.URLError as err:
        timed_out = isinstance(err.reason, (socket.timeout, TimeoutError))
        raise _Retryable("timeout" if timed_out else "connection_error") from None
    except (ConnectionError, http.client.HTTPException):
        raise _Retryable("connection_error") from None
    except ValueError:  # not a URL urllib can open
        raise _Fatal("bad_url") from None
    if expected is not None and expected.isdigit() and int(expected) != len(body):
        raise _Retryable("truncated")
    return body


def _check_image(body: bytes) -> None:
    """The body must decode to the last pixel (a JPEG cut short is not kept)."""
    try:
        with Image.open(io.BytesIO(body)) as image:
            image.load()
    except Exception:  # PIL raises many types for undecodable data
        raise _Fatal("not_image") from None


def download_one(url: str, path: Path, timeout: float, retries: int, backoff: float,
                 stop: threading.Event | None = None) -> str | None:
    """Fetch one image into ``path``; ``None`` on success, else the reason of the last failure."""
    stop = stop or threading.Event()
    for attempt in range(retries + 1):
        try:
            body = _fetch(url, timeout, stop)
            _check_image(body)
            atomic_write(path, body)
            return None
        except _Fatal as err:
            return err.args[0]
        except _Retryable as err:
            reason = err.args[0]
            if attempt < retries and stop.wait(backoff * 2 ** attempt):
                return INTERRUPTED
    return reason


def download_images(items: Iterable[tuple[str, str]], out_dir: str | Path, workers: int = 8, timeout: float = 10.0,
                    retries: int = 3, backoff: float = 0.5) -> DownloadReport:
    """Download every ``(id, url)`` to ``out_dir/<id>.jpg``; existing non-empty files are skipped. On Ctrl-C the
    workers stop within one read and :class:`DownloadInterrupted` carries the report of what was done."""
    if timeout <= 0 or workers < 1 or retries < 0:
        raise ValueError(f"need timeout > 0, workers >= 1 and retries >= 0, got {timeout}, {workers}, {retries}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    report, todo = DownloadReport(), []
    failed = Counter()
    for item_id, url in items:
        path = out_dir / f"{item_id}.jpg"
        if not item_id or item_id.startswith(".") or path.parent != out_dir:  # an id must not leave out_dir
            failed["bad_id"] += 1
            report.failures.append({"id": item_id, "url": url, "reason": "bad_id"})
        elif path.is_file() and path.stat().st_size > 0:
            report.skipped += 1
        else:
            todo.append((item_id, url, path))

    def record(future: Future) -> None:
        reason = None if future.cancelled() else future.result()
        if future.cancelled() or reason == INTERRUPTED:
            report.not_done += 1
        elif reason is None:
            report.downloaded += 1
        else:
            item_id, url = futures[future]
            failed[reason] += 1
            report.failures.append({"id": item_id, "url": url, "reason": reason})

    stop = threading.Event()
    pool = ThreadPoolExecutor(max_workers=workers)
    futures: dict[Future, tuple[str, str]] = {}
    pending: set[Future] = set()
    with _sigint_sets(stop):
        try:
            for item_id, url, path in todo:
                if stop.is_set():
                    break
                futures[pool.submit(download_one, url, path, timeout, retries, backoff, stop)] = (item_id, url)
            pending = set(futures)
            with tqdm(total=len(todo), desc="download images", unit="img", disable=None) as bar:
                while pending and not stop.is_set():
                    done, pending = wait(pending, timeout=0.1, return_when=FIRST_COMPLETED)
                    for future in done:
                        record(future)
                    bar.update(len(done))
        finally:  # on Ctrl-C running downloads return within one read or backoff, queued ones are cancelled
            pool.shutdown(wait=True, cancel_futures=True)
    if stop.is_set():
        for future in pending:
            record(future)
        report.not_done += len(todo) - len(futures)  # never submitted
        report.interrupted = True
    report.failed = dict(sorted(failed.items()))
    report.failures.sort(key=lambda f: f["id"])
    log.info("images: %d downloaded, %d skipped (on disk), %d failed %s", report.downloaded, report.skipped,
             sum(failed.values()), report.failed)
    if report.interrupted:
        raise DownloadInterrupted(report)
    return report


@contextmanager
def _sigint_sets(event: threading.Event) -> Iterator[None]:
    """Within the block, Ctrl-C sets ``event`` instead of raising KeyboardInterrupt (main thread only: elsewhere
    Python delivers no signal anyway)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, lambda signum, frame: event.set())
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def catalog_image_urls(catalog_dir: str | Path) -> Iterator[tuple[str, str]]:
    """``(id, url)`` pairs from a catalog directory's ``image_urls.tsv`` (written by the Amazon loader)."""
    path = Path(catalog_dir) / IMAGE_URLS
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: only catalogs built from Amazon metadata list image URLs")
    with open(path, newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f, delimiter="\t"):
            yield row["id"], row["url"]


def meta_image_urls(meta_path: str | Path, fmt: str) -> Iterator[tuple[str, str]]:
    """``(asin, url)`` pairs streamed from an Amazon metadata file (first ASIN wins, malformed lines skipped)."""
    seen = set()
    for record in read_records(meta_path, META_PARSERS[fmt], "metadata"):
        if record is not None and record.image_url and record.asin not in seen:
            seen.add(record.asin)
            yield record.asin, record.image_url

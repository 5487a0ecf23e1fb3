"""Concurrent, resumable product-image download: ``<out>/<id>.jpg`` for each ``(id, url)``.

Each file is written atomically (temp file, then ``os.replace``) and only after its body decodes as an image.
Timeouts, connection errors, HTTP 5xx and truncated bodies (fewer bytes than ``Content-Length``) are retried with
exponential backoff; other HTTP errors (404, ...) and bodies that are not images fail at once. Files already on
disk (non-empty) are skipped, so an interrupted download resumes where it stopped.
"""
from __future__ import annotations

import csv
import http.client
import io
import logging
import socket
import time
import urllib.error
import urllib.request
from collections import Counter
from concurrent.futures import ThreadPoolExecutor, as_completed
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

    def as_dict(self) -> dict:
        return {"downloaded": self.downloaded, "skipped": self.skipped, "failed_total": sum(self.failed.values()),
                "failed": self.failed, "failures": self.failures}


def _fetch(url: str, timeout: float) -> bytes:
    """The body of ``url``; raises ``_Retryable`` or ``_Fatal`` with a short reason."""
    try:
        request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
        with urllib.request.urlopen(request, timeout=timeout) as response:
            expected = response.headers.get("Content-Length")
            body = response.read()
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
    try:
        with Image.open(io.BytesIO(body)) as image:
            image.verify()
    except Exception:  # PIL raises many types for undecodable data
        raise _Fatal("not_image") from None


def download_one(url: str, path: Path, timeout: float, retries: int, backoff: float) -> str | None:
    """Fetch one image into ``path``; ``None`` on success, else the reason of the last failure."""
    for attempt in range(retries + 1):
        try:
            body = _fetch(url, timeout)
            _check_image(body)
            atomic_write(path, body)
            return None
        except _Fatal as err:
            return err.args[0]
        except _Retryable as err:
            reason = err.args[0]
            if attempt < retries:
                time.sleep(backoff * 2 ** attempt)
    return reason


def download_images(items: Iterable[tuple[str, str]], out_dir: str | Path, workers: int = 8, timeout: float = 10.0,
                    retries: int = 3, backoff: float = 0.5) -> DownloadReport:
    """Download every ``(id, url)`` to ``out_dir/<id>.jpg``; existing non-empty files are skipped."""
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
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool, \
            tqdm(total=len(todo), desc="download images", unit="img", disable=None) as bar:
        futures = {pool.submit(download_one, url, path, timeout, retries, backoff): (item_id, url)
                   for item_id, url, path in todo}
        for future in as_completed(futures):
            reason = future.result()
            if reason is None:
                report.downloaded += 1
            else:
                item_id, url = futures[future]
                failed[reason] += 1
                report.failures.append({"id": item_id, "url": url, "reason": reason})
            bar.update()
    report.failed = dict(sorted(failed.items()))
    report.failures.sort(key=lambda f: f["id"])
    log.info("images: %d downloaded, %d skipped (on disk), %d failed %s", report.downloaded, report.skipped,
             sum(failed.values()), report.failed)
    return report


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

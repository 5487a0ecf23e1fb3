"""Image download against a local HTTP server on 127.0.0.1: good images, 404, 503, slow, truncated, a JPEG cut
short, a server that trickles bytes, not an image; Ctrl-C; bad arguments."""
from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from PIL import Image

from gnn_mmsearch.cli import main
from gnn_mmsearch.data.download import download_images

TIMEOUT = 0.5  # client timeout; the slow endpoints sleep longer than this


def _jpeg(color: str) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (16, 16), color).save(buf, format="JPEG")
    return buf.getvalue()


class _Handler(BaseHTTPRequestHandler):
    """``/good/<name>``, ``/missing``, ``/flaky`` (503 once), ``/slow_once``, ``/slow``, ``/truncated``, ``/text``,
    ``/cut_jpeg`` (half a JPEG with a matching Content-Length), ``/trickle`` (a JPEG, one byte every 50 ms)."""

    hits: Counter = Counter()

    def log_message(self, *args):  # keep the test output quiet
        pass

    def _send(self, body: bytes, status: int = 200, length: int | None = None):
        self.send_response(status)
        self.send_header("Content-Type", "image/jpeg")
        self.send_header("Content-Length", str(len(body) if length is None else length))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        path = self.path
        self.hits[path] += 1
        first = self.hits[path] == 1
        if path.startswith("/good/"):
            self._send(_jpeg(path.rsplit("/", 1)[1]))
        elif path == "/missing":
            self._send(b"not found", status=404)
        elif path == "/flaky" and first:
            self._send(b"busy", status=503)
        elif path == "/flaky":
            self._send(_jpeg("green"))
        elif path == "/slow" or (path == "/slow_once" and first):
            time.sleep(TIMEOUT * 3)
            with contextlib.suppress(OSError):  # the client gave up already
                self._send(_jpeg("blue"))
        elif path == "/slow_once":
            self._send(_jpeg("blue"))
        elif path == "/truncated":
            body = _jpeg("black")
            self._send(body[: len(body) // 2], length=len(body))
        elif path == "/text":
            self._send(b"<html>an error page, not an image</html>")
        elif path == "/cut_jpeg":
            body = _jpeg("gray")
            self._send(body[: len(body) // 2])
        elif path == "/trickle":
            body = _jpeg("yellow")
            self.send_response(200)
            self.send_header("Content-Type", "image/jpeg")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            with contextlib.suppress(OSError):  # the client gave up
                for i in range(len(body)):
                    self.wfile.write(body[i:i + 1])
                    self.wfile.flush()
                    time.sleep(0.05)


@pytest.fixture
def server(env):  # env: loopback only, no network
    _Handler.hits = Counter()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def _items(base: str) -> list[tuple[str, str]]:
    return [("A1", f"{base}/good/red"), ("A2", f"{base}/good/white"), ("A3", f"{base}/missing"),
            ("A4", f"{base}/flaky"), ("A5", f"{base}/slow_once"), ("A6", f"{base}/slow"),
            ("A7", f"{base}/truncated"), ("A8", f"{base}/text"), ("../A9", f"{base}/good/red"), ("A10", "no-url")]


def test_download_counts_failures_and_resumes(server, tmp_path):
    out = tmp_path / "images"
    report = download_images(_items(server), out, workers=4, timeout=TIMEOUT, retries=2, backoff=0.01)

    assert report.downloaded == 4 and report.skipped == 0  # A1, A2, flaky A4 and slow-once A5 after a retry
    assert report.failed == {"bad_id": 1, "bad_url": 1, "http_404": 1, "not_image": 1, "timeout": 1, "truncated": 1}
    assert {f["id"]: f["reason"] for f in report.failures}["A3"] == "http_404"
    assert sorted(p.name for p in out.iterdir()) == ["A1.jpg", "A2.jpg", "A4.jpg", "A5.jpg"]  # no .tmp left
    assert not (tmp_path / "A9.jpg").exists()
    with Image.open(out / "A2.jpg") as image:
        assert image.getpixel((8, 8))[0] > 200
    hits = _Handler.hits
    assert hits["/missing"] == 1 and hits["/text"] == 1  # no retry on 404 or a body that is not an image
    assert hits["/truncated"] == 3 and hits["/slow"] == 3 and hits["/flaky"] == 2  # retried, then given up or done

    hits.clear()
    again = download_images(_items(server), out, workers=4, timeout=TIMEOUT, retries=0)
    assert again.skipped == 4 and again.downloaded == 0 and sum(again.failed.values()) == 6
    assert not any(p.startswith("/good/") or p in ("/flaky", "/slow_once") for p in hits)  # on disk: not fetched


def test_empty_file_is_fetched_again(server, tmp_path):
    (tmp_path / "A1.jpg").write_bytes(b"")
    report = download_images([("A1", f"{server}/good/red")], tmp_path, timeout=TIMEOUT)
    assert report.downloaded == 1 and (tmp_path / "A1.jpg").stat().st_size > 0


def test_cli_from_meta_file_and_catalog_dir(server, tmp_path):
    meta = tmp_path / "meta_Toys.json"
    meta.write_text("\n".join(json.dumps({"asin": asin, "title": asin, "imageURLHighRes": [url]})
                              for asin, url in [("B001", f"{server}/good/red"), ("B002", f"{server}/missing")])
                    + "\n{broken\n")
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        rc = main(["download-images", str(meta), "--format", "2018", "--out", str(tmp_path / "img"),
                   "--timeout", str(TIMEOUT), "--retries", "1"])
    assert rc == 0 and "downloaded 1, skipped 0" in out.getvalue() and "http_404=1" in out.getvalue()
    report = json.loads((tmp_path / "img" / "download_report.json").read_text())
    assert report["downloaded"] == 1 and report["failures"][0]["id"] == "B002"

    catalog = tmp_path / "catalog"
    catalog.mkdir()
    (catalog / "image_urls.tsv").write_text(f"id\turl\nB001\t{server}/good/red\nB003\t{server}/good/blue\n")
    with contextlib.redirect_stdout(io.StringIO()) as out:
        assert main(["download-images", str(catalog), "--out", str(tmp_path / "img")]) == 0
    assert "downloaded 1, skipped 1" in out.getvalue()


def test_cli_errors(tmp_path, capsys):
    meta = tmp_path / "meta.json"
    meta.write_text("{}\n")
    assert main(["download-images", str(meta), "--out", str(tmp_path / "o")]) == 2
    assert "--format is needed" in capsys.readouterr().err
    assert main(["download-images", str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    assert "image_urls.tsv" in capsys.readouterr().err


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_a_jpeg_cut_short_is_not_kept_and_files_get_the_usual_mode(server, tmp_path):
    report = download_images([("A1", f"{server}/good/red"), ("A2", f"{server}/cut_jpeg")], tmp_path, timeout=TIMEOUT,
                             retries=0)
    assert report.downloaded == 1 and report.failed == {"not_image": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["A1.jpg"]
    assert (tmp_path / "A1.jpg").stat().st_mode & 0o777 == 0o666 & ~_umask()  # 0644 under umask 022, not 0600


def test_the_timeout_bounds_the_whole_request(server, tmp_path):
    """A server that keeps sending, slowly, never hits a socket timeout: the deadline on the request stops it."""
    started = time.monotonic()
    report = download_images([("A1", f"{server}/trickle")], tmp_path, timeout=TIMEOUT, retries=0)
    assert time.monotonic() - started < 4 * TIMEOUT  # the body alone would take about 30 s
    assert report.failed == {"timeout": 1} and not list(tmp_path.glob("*.jpg"))


def test_ctrl_c_stops_promptly_and_writes_the_report(server, tmp_path):
    meta = tmp_path / "meta.json"
    urls = [("G1", f"{server}/good/red"), *((f"T{i}", f"{server}/trickle") for i in range(6))]
    meta.write_text("\n".join(json.dumps({"asin": a, "title": a, "imageURLHighRes": [u]}) for a, u in urls) + "\n")
    out = tmp_path / "img"
    proc = subprocess.Popen([sys.executable, "-m", "gnn_mmsearch", "download-images", str(meta), "--format", "2018",
                             "--out", str(out), "--workers", "2", "--timeout", "60", "--retries", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not (out / "G1.jpg").exists() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    stopped = time.monotonic()
    stdout, stderr = proc.communicate(timeout=30)
    assert time.monotonic() - stopped < 5  # not the minutes the trickling downloads would take
    assert proc.returncode == 130 and "Traceback" not in stderr
    report_path = out / "download_report.json"
    assert stderr.strip() == f"gnn-mmsearch download-images: interrupted: 1 downloaded, 6 not done; report: {report_path}"
    report = json.loads(report_path.read_text())
    assert report["interrupted"] is True and report["downloaded"] == 1 and report["not_done"] == 6
    assert sorted(p.name for p in out.iterdir()) == ["G1.jpg", "download_report.json"]  # nothing half-written


@pytest.mark.parametrize("args, message", [
    (["--timeout", "0"], "--timeout must be above 0 seconds, got 0"),
    (["--timeout", "-1"], "--timeout must be above 0 seconds, got -1"),
    (["--workers", "0"], "--workers must be at least 1"),
    (["--retries", "-1"], "--retries must be at least 0"),
    (["--format", "2023"], "does not read as --format 2023 metadata: it looks like --format 2018"),
    (["--format", "2018", "--no-url"], "no image URL in it (read as --format 2018)"),
])
def test_bad_arguments_are_one_line(tmp_path, capsys, args, message):
    meta = tmp_path / "meta.json"
    record = {"asin": "B001", "title": "t"} | ({} if "--no-url" in args else {"imageURLHighRes": ["http://x/B001.jpg"]})
    meta.write_text(json.dumps(record) + "\n")
    args = [a for a in args if a != "--no-url"] if "--format" in args else [*args, "--format", "2018"]
    assert main(["download-images", str(meta), "--out", str(tmp_path / "o"), *args]) == 2
    out, err = capsys.readouterr()
    assert err.startswith("gnn-mmsearch download-images: ") and message in err, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in out + err
    assert not (tmp_path / "o").exists()

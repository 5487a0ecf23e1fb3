"""Session fixtures shared by test modules: a hermetic environment and one small real run (`gnn-mmsearch run` on a
200-product synthetic catalog with the real pretrained feature extractors)."""
from __future__ import annotations

import contextlib
import io
import socket
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

from gnn_mmsearch.cli import main

SMALL_RUN = ["data.num_products=200", "data.num_users=30", "data.image_size=48", "train.max_epochs=15"]


@pytest.fixture(scope="session")
def env(tmp_path_factory):
    """Caches in temp dirs, no network, one torch thread (two shared cores), ``sys.argv`` restored."""
    cache = tmp_path_factory.mktemp("gnn_mmsearch_cache")
    home = tmp_path_factory.mktemp("home")
    connect = socket.socket.connect

    def local_only(sock, address):  # local IPC (e.g. an experiment tracker's service) is fine, the network is not
        if sock.family == getattr(socket, "AF_UNIX", None) or address[0] in ("127.0.0.1", "::1", "localhost"):
            return connect(sock, address)
        raise OSError(f"network access in a test: {address!r}")

    mp = pytest.MonkeyPatch()
    mp.setenv("GNN_MMSEARCH_CACHE", str(cache))
    mp.setenv("HF_HUB_OFFLINE", "1")
    mp.setenv("TRANSFORMERS_OFFLINE", "1")
    for var in ("WANDB_DIR", "WANDB_CACHE_DIR", "WANDB_CONFIG_DIR", "WANDB_DATA_DIR", "WANDB_ARTIFACT_DIR"):
        mp.setenv(var, str(home / var.lower()))
    mp.setattr(socket.socket, "connect", local_only)
    mp.setattr(sys, "argv", list(sys.argv))  # the `run` command hands its overrides to Hydra through sys.argv
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield cache
    torch.set_num_threads(threads)
    mp.undo()


def run_cli(run_dir: Path, *overrides: str) -> str:
    """``gnn-mmsearch run`` in this process; returns what it printed."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        rc = main(["run", f"hydra.run.dir={run_dir}", *overrides])
    assert rc == 0
    return out.getvalue()


@pytest.fixture(scope="session")
def first_run(env, tmp_path_factory) -> tuple[Path, str]:
    """The small run: its directory and what it printed."""
    run_dir = tmp_path_factory.mktemp("runs") / "first"
    return run_dir, run_cli(run_dir, *SMALL_RUN)


@pytest.fixture(scope="session")
def run_dir(first_run) -> Path:
    return first_run[0]


@contextlib.contextmanager
def live_server(app):
    """``app`` served by a real uvicorn server in a thread on a free loopback port; yields its base URL."""
    import uvicorn

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_config=None, access_log=False))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(30)
        sock.close()

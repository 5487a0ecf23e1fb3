"""The run directory: its layout, how both jobs write it, how everything else reads it, and which is newest.

    <run>/config.yaml        resolved config               (both jobs)
    <run>/run.json           task, seed, data fingerprint, timings, library versions, ...
    <run>/metrics.json       flat metrics, e.g. copurchase/recall@10 or test/recall@20
    <run>/history.json       one row per epoch
    <run>/encoder/           search job: MultimodalGraphEncoder.save_pretrained
    <run>/index              search job: the graph encoder's index (product and history queries)
    <run>/relevance/         search job: the relevance head (text and image queries), with relevance_index
    <run>/expansion.json     search job with relevance.expansion: the words added to each product's BM25 document
    <run>/ranker/            search job with a learned ranker
    <run>/ranking_features/  search job with a ranking stage: the products' raw features
    <run>/model.pt           recommend job: the recommender's state dict
    <run>/.hydra/            Hydra's overrides (read by ``report``)

A run is finished once ``run.json`` exists: it is written last, atomically, like every other file here.
"""
from __future__ import annotations

import json
import platform
import re
from pathlib import Path
from typing import Any, Iterable

from ._atomic import atomic_write, write_json

TASKS = ("search", "recommend")


class RunDir:
    """One run directory (``RunDir(path)``); file names are its attributes, so nothing else spells them."""

    CONFIG, INFO, METRICS, HISTORY = "config.yaml", "run.json", "metrics.json", "history.json"
    ENCODER, INDEX, RANKER, RANKING_FEATURES, RECOMMENDER = "encoder", "index", "ranker", "ranking_features", "model.pt"
    RELEVANCE, RELEVANCE_INDEX, EXPANSION = "relevance", "relevance_index", "expansion.json"
    TERM_VECTORS = "term_vectors.npz"  # the term match's word vectors (retrievers/term_match.py)
    PER_USER = "test_per_user.npz"  # top-N runs: each test user's recall / NDCG at every K, for paired tests

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    def __truediv__(self, name: str) -> Path:
        return self.path / name

    # ------------------------------------------------------------------ writing
    def create(self) -> "RunDir":
        """Make the folder; a folder that cannot be written is a one-line ``OSError``."""
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            probe = self.path / ".write-test"
            probe.touch()
            probe.unlink()
        except OSError as err:
            raise OSError(f"cannot write the run directory {self.path}: {err.strerror or err}") from None
        return self

    def write_results(self, task: str, cfg, metrics: dict[str, float], history: list[dict], info: dict) -> None:
        """Config, metrics and history, then ``run.json`` (``task``, ``seed`` and library versions added) last."""
        from omegaconf import OmegaConf

        atomic_write(self / self.CONFIG, OmegaConf.to_yaml(cfg, resolve=True))
        write_json(self / self.METRICS, metrics)
        write_json(self / self.HISTORY, history)
        write_json(self / self.INFO, {"task": task, "seed": cfg.seed, **info, "versions": _versions()})

    # ------------------------------------------------------------------ reading
    def _json(self, name: str) -> Any:
        path = self / name
        try:
            return json.loads(path.read_text())
        except FileNotFoundError:
            raise FileNotFoundError(f"{self.path} is not a finished gnn-mmsearch run (no {name})") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            raise ValueError(f"{path}: unreadable ({err})") from None

    def info(self) -> dict:
        return self._json(self.INFO)

    def metrics(self) -> dict[str, float]:
        return self._json(self.METRICS)

    def history(self) -> list[dict]:
        return self._json(self.HISTORY) if (self / self.HISTORY).exists() else []

    def config(self):
        """The resolved config the run was made with (a ``DictConfig``)."""
        from omegaconf import OmegaConf

        if not (self / self.CONFIG).is_file():
            raise FileNotFoundError(f"{self.path} has no {self.CONFIG}")
        return OmegaConf.load(self / self.CONFIG)

    @property
    def finished(self) -> bool:
        return (self / self.INFO).is_file()

    @property
    def task(self) -> str | None:
        """``search`` or ``recommend`` for a finished run, else ``None`` (runs from before ``task`` was recorded are
        told apart by their files)."""
        if not self.finished:
            return None
        try:
            task = self.info().get("task")
        except ValueError:
            return None
        return task or ("search" if (self / self.ENCODER).is_dir() else "recommend")

    def require(self, task: str) -> "RunDir":
        """This run, checked to be a finished run of ``task``; else a one-line ``FileNotFoundError``."""
        if not self.path.is_dir():
            raise FileNotFoundError(f"{self.path} is not a finished gnn-mmsearch run (no such directory)")
        found = self.task
        if found is None:
            raise FileNotFoundError(f"{self.path} is not a finished gnn-mmsearch run (no {self.INFO})")
        if found != task:
            what = {"search": "a search run (catalog, encoder, index)", "recommend": "a top-N recommendation run"}
            raise FileNotFoundError(f"{self.path} is {what[found]}, not {what[task]}")
        return self

    def feature_cache(self) -> Path | None:
        """The feature cache the run used (``<cache_dir>/features``), when its config names one."""
        if not (self / self.CONFIG).is_file():
            return None
        cache_dir = self.config().get("cache_dir")
        return Path(cache_dir).expanduser() / "features" if cache_dir else None


def find_runs(paths: Iterable[str | Path]) -> list[RunDir]:
    """Every finished run at or below ``paths`` (any depth), in a stable order."""
    found: dict[Path, None] = {}
    for root in map(Path, paths):
        if not root.exists():
            raise FileNotFoundError(f"no such directory: {root}")
        for info in sorted(root.rglob(RunDir.INFO), key=_natural):
            if (info.parent / RunDir.METRICS).exists():
                found[info.parent.resolve()] = None
    return [RunDir(p) for p in found]


def newest_run(task: str = "search", roots: Iterable[str | Path] = ("runs",)) -> RunDir | None:
    """The newest finished run of ``task`` directly under ``roots`` (default ``./runs``: single runs, not sweeps)."""
    runs = [RunDir(info.parent) for root in map(Path, roots) for info in root.glob(f"*/{RunDir.INFO}")]
    runs = [r for r in runs if r.task == task]
    return max(runs, key=lambda r: (r / RunDir.INFO).stat().st_mtime) if runs else None


def _natural(path: Path) -> list:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", str(path))]


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for name in ("torch", "torch_geometric", "timm", "sentence-transformers", "hnswlib", "lightgbm"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            pass
    return out

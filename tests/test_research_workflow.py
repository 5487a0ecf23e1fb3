"""The research workflow on the small run of conftest.py: wandb offline files, logger switch, an ablation multirun
+ report, explanations (text and PNG)."""
from __future__ import annotations

import contextlib
import io
import json

import pytest
import torch
from omegaconf import OmegaConf
from PIL import Image

from gnn_mmsearch.cli import main
from gnn_mmsearch.explain import Explanation, explain
from gnn_mmsearch.search import Searcher


def _run(*args: str) -> None:
    """A ``gnn-mmsearch`` command in this process, its printout swallowed."""
    with contextlib.redirect_stdout(io.StringIO()):
        assert main(list(args)) == 0


def _overrides(run_dir) -> list[str]:
    return [o for o in OmegaConf.load(run_dir / ".hydra" / "overrides.yaml") if not o.startswith("hydra.")]


def _wandb_files(run_dir):
    return list((run_dir / "wandb").glob("offline-run-*/run-*.wandb"))


def test_runs_log_to_wandb_offline_inside_the_run_directory(run_dir):
    (log,) = _wandb_files(run_dir)
    data = log.read_bytes()  # written during the session fixture's run: long complete
    assert b"train/loss" in data and b"val/recall@10" in data  # per-epoch rows
    assert b"copurchase/recall@10" in data and b"index/recall@10" in data  # final metrics


def test_logger_none_same_seed_same_metrics(run_dir, tmp_path):
    """Rerun with tracking off: no wandb files, and the very same metrics (a fixed seed repeats on CPU)."""
    again = tmp_path / "again"
    _run("run", f"hydra.run.dir={again}", *_overrides(run_dir), "logger=none")
    assert not (again / "wandb").exists()
    assert (again / "metrics.json").read_text() == (run_dir / "metrics.json").read_text()


def test_ablation_multirun_then_report(env, run_dir, tmp_path):
    sweep = tmp_path / "sweep"
    data = [o for o in _overrides(run_dir) if o.startswith("data.")]
    _run("run", "-m", "experiment=fusion", "model.fusion=concat,weighted", "seed=0", *data, "train.max_epochs=3",
         "eval.examples=[]", f"hydra.sweep.dir={sweep}")
    jobs = sorted(p.parent for p in sweep.glob("*/metrics.json"))
    assert [j.name for j in jobs] == ["0", "1"]
    assert all(len(_wandb_files(j)) == 1 for j in jobs)  # one wandb run per job, never merged

    _run("report", str(sweep))
    report = sweep / "report"
    md = (report / "report.md").read_text()
    for job, fusion in zip(jobs, ("concat", "weighted")):
        recall = json.loads((job / "metrics.json").read_text())["copurchase/recall@10"]
        row = next(line for line in md.splitlines() if line.startswith(f"| model.fusion={fusion} | 0 | "))
        assert f"{recall:.4f}" in row and "±" not in row  # one seed: no std
    assert len((report / "report.csv").read_text().splitlines()) == 3
    assert Image.open(report / "ablation_model.fusion.png").format == "PNG"
    assert Image.open(report / "training_curves.png").format == "PNG"


@pytest.fixture(scope="module")
def searcher(run_dir):
    return Searcher.from_run(run_dir)


def _graph_degree(searcher) -> dict[str, int]:
    degree = dict.fromkeys(searcher.catalog.ids, 0)
    for e in searcher.catalog.edges:
        if e.type in searcher.encoder.config.graph_edge_types:
            degree[e.src] += 1
            degree[e.dst] += 1
    return degree


def test_explain_modalities_and_neighbours(run_dir, searcher):
    degree = _graph_degree(searcher)
    pid = max(degree, key=degree.get)
    title = searcher.catalog.products[searcher.catalog.index_of[pid]].title
    ex = explain(run_dir, query=title, product_id=pid, k=3)

    served = searcher.encoder.encode_query(text=title)[0] @ torch.as_tensor(searcher.index.vectors([pid]))[0]
    assert ex.score == pytest.approx(float(served), abs=1e-5)  # the score the index serves
    assert sum(ex.modality_weights.values()) == pytest.approx(1.0)
    assert all(w >= 0 for w in ex.modality_weights.values())
    assert sum(ex.fusion_weights.values()) == pytest.approx(1.0, abs=1e-5)  # default fusion: attention
    assert len(ex.neighbours) == min(3, degree[pid])
    assert any(n.contribution != 0 for n in ex.neighbours)
    magnitudes = [abs(n.contribution) for n in ex.neighbours]
    assert magnitudes == sorted(magnitudes, reverse=True)
    assert pid in ex.to_text() and ex.neighbours[0].id in ex.to_text()


def test_explain_a_product_without_links(run_dir, searcher):
    degree = _graph_degree(searcher)
    lonely = next(pid for pid, d in degree.items() if d == 0)
    ex = explain(run_dir, product=max(degree, key=degree.get), product_id=lonely)
    assert ex.neighbours == [] and ex.score == pytest.approx(ex.content_score)
    assert ex.query.startswith("product ")


def test_explain_from_a_searcher_reads_the_runs_feature_cache(run_dir, searcher, monkeypatch):
    pid = searcher.search(text="wireless mouse", k=1)[0].id
    expected = explain(run_dir, query="wireless mouse", product_id=pid, k=3)

    def no_extraction(*args, **kwargs):
        raise AssertionError("catalog image features were extracted again instead of read from the run's cache")

    monkeypatch.setattr(searcher.encoder.feature_extractor("image"), "encode", no_extraction)
    got = explain(searcher, query="wireless mouse", product_id=pid, k=3)
    assert got.score == pytest.approx(expected.score, abs=1e-6)
    assert [(n.id, round(n.contribution, 6)) for n in got.neighbours] == \
        [(n.id, round(n.contribution, 6)) for n in expected.neighbours]


def test_explain_cli_writes_a_png(run_dir, tmp_path, capsys):
    out = tmp_path / "why.png"
    assert main(["explain", "wireless mouse", "--run", str(run_dir), "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "modalities" in text and f"picture: {out}" in text
    assert Image.open(out).format == "PNG"
    assert main(["explain", "--product", "NOPE", "--run", str(run_dir)]) == 2
    assert main(["explain", "--run", str(run_dir)]) == 2


def _explain_cli(capsys, *args) -> tuple[int, str, str]:
    capsys.readouterr()
    rc = main(["explain", *map(str, args)])
    out, err = capsys.readouterr()
    return rc, out, err


@pytest.mark.parametrize("args, message", [
    (["--out", "{missing}/why.png"], "--out {missing}/why.png: no such folder {missing}"),
    (["-k", "-3"], "k must be at least 0, got -3"),
])
def test_explain_bad_arguments_are_one_line(run_dir, tmp_path, capsys, args, message):
    missing = tmp_path / "no" / "such"
    args = [a.format(missing=missing) for a in args]
    rc, out, err = _explain_cli(capsys, "wireless mouse", "--run", run_dir, *args)
    assert rc == 2 and out == "" and "Traceback" not in err
    assert err.strip() == f"gnn-mmsearch explain: {message.format(missing=missing)}"
    assert not (tmp_path / "no").exists()


def test_explain_k0_counts_the_links_without_measuring_them(run_dir, searcher, tmp_path, capsys):
    degree = _graph_degree(searcher)
    pid = max(degree, key=degree.get)
    linked = {e.dst if e.src == pid else e.src for e in searcher.catalog.edges
              if pid in (e.src, e.dst) and e.type in searcher.encoder.config.graph_edge_types}
    ex = explain(run_dir, product=searcher.catalog.ids[0], product_id=pid, k=0)
    assert ex.neighbours == [] and ex.links == len(linked) > 1
    assert f"neighbours: {len(linked)} links, none shown (k=0)" in ex.to_text()
    rc, out, err = _explain_cli(capsys, "--product", searcher.catalog.ids[0], "--result", pid, "-k", "0", "--run",
                                run_dir, "--out", tmp_path / "k0.png")
    assert rc == 0 and f"neighbours: {len(linked)} links, none shown (k=0)" in out
    assert "no links" not in out and Image.open(tmp_path / "k0.png").format == "PNG"


def test_a_modality_that_lowered_the_score_shows_as_negative(tmp_path):
    ex = Explanation("red wallet", "P1", "red wallet", None, score=0.6, content_score=0.5,
                     modality_attribution={"image": -0.1, "text": 0.3}, fusion_weights={"image": 0.4, "text": 0.6})
    assert ex.modality_weights == pytest.approx({"image": 0.25, "text": 0.75})
    assert ex.modality_effects == pytest.approx({"image": -0.25, "text": 0.75})
    assert "  image   -25.0%  (-0.1000)" in ex.to_text() and "  text    +75.0%  (+0.3000)" in ex.to_text()
    assert Image.open(ex.plot(tmp_path / "neg.png")).format == "PNG"

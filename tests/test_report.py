"""``gnn-mmsearch report`` on hand-made multirun directories: grouping by overrides, mean ± std, best marks, plots."""
from __future__ import annotations

import csv
import json
import statistics

import pytest
import yaml
from PIL import Image

from gnn_mmsearch.cli import main
from gnn_mmsearch.report import ablation_axes, find_jobs, group_jobs, write_report

RECALL = {("concat", 0): 0.50, ("concat", 1): 0.54, ("attention", 0): 0.60, ("attention", 1): 0.66}


def _job(root, num, overrides, seed, metrics, epochs=3):
    job = root / str(num)
    (job / ".hydra").mkdir(parents=True)
    (job / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump([*overrides, f"seed={seed}"]))
    (job / "metrics.json").write_text(json.dumps(metrics))
    (job / "run.json").write_text(json.dumps({"seed": seed, "epochs": epochs, "timings_s": {"train_s": 10.0 + num}}))
    history = [{"epoch": e, "train/loss": 5.0 / e, "val/recall@10": metrics["copurchase/recall@10"] * e / epochs}
               for e in range(1, epochs + 1)]
    (job / "history.json").write_text(json.dumps(history))


@pytest.fixture
def sweep(tmp_path):
    root = tmp_path / "multirun"
    for num, ((fusion, seed), recall) in enumerate(RECALL.items()):
        _job(root, num, ["experiment=fusion", f"model.fusion={fusion}"], seed,
             {"copurchase/recall@10": recall, "index/recall@10": 1.0})
    (root / "4" / ".hydra").mkdir(parents=True)  # a crashed job: no metrics.json, skipped
    return root


def test_jobs_are_grouped_by_overrides_without_seed(sweep):
    jobs = find_jobs([sweep])
    assert [j.path.name for j in jobs] == ["0", "1", "2", "3"]
    groups = group_jobs(jobs)
    assert [g.label for g in groups] == ["model.fusion=concat", "model.fusion=attention"]
    assert [sorted(j.seed for j in g.jobs) for g in groups] == [[0, 1], [0, 1]]
    mean, std = groups[1].mean_std("copurchase/recall@10")
    assert mean == pytest.approx(0.63) and std == pytest.approx(statistics.stdev([0.60, 0.66]))
    assert ablation_axes(groups) == ["model.fusion"]


def test_report_table_marks_the_best_and_writes_csv_and_plots(sweep):
    written = write_report([sweep])
    md = written["markdown"].read_text()
    rows = [line for line in md.splitlines() if line.startswith("| model.fusion")]
    assert len(rows) == 2
    assert "**0.6300 ± 0.0424**" in rows[1] and "**" not in rows[0].split("|")[3]
    assert "1.0000 ± 0.0000" in rows[0] and "**1.0000" not in md  # a column where all tie is not marked
    assert "**10.5 ± 0.7**" in rows[0]  # train_s: lower is better

    with open(written["csv"]) as f:
        table = list(csv.DictReader(f))
    assert [r["configuration"] for r in table] == ["model.fusion=concat", "model.fusion=attention"]
    assert float(table[0]["copurchase/recall@10 mean"]) == pytest.approx(0.52)
    assert table[0]["seeds"] == "0 1" and "copurchase/recall@10" in table[1]["best"].split(";")

    for name in ("ablation model.fusion", "curves"):
        assert written[name].suffix == ".png" and Image.open(written[name]).size[0] > 300
        assert f"]({written[name].name})" in md


def test_report_is_idempotent(sweep):
    first = {p.name: p.read_bytes() for p in write_report([sweep]).values()}
    second = {p.name: p.read_bytes() for p in write_report([sweep]).values()}
    assert first == second and sorted(p.name for p in (sweep / "report").iterdir()) == sorted(first)


def test_several_sweeps_plot_one_axis_each(sweep, tmp_path):
    depth = tmp_path / "depth"
    for num, layers in enumerate([0, 2, 0, 2]):
        _job(depth, num, ["experiment=depth", f"model.gnn.layers={layers}"], num // 2,
             {"copurchase/recall@10": 0.4 + 0.1 * layers, "index/recall@10": 1.0})
    written = write_report([sweep, depth], out=tmp_path / "both")
    assert {k for k in written if k.startswith("ablation")} == {"ablation model.fusion", "ablation model.gnn.layers"}
    assert "4 configurations" in written["markdown"].read_text()


def test_cli_report(sweep, capsys, tmp_path):
    assert main(["report", str(sweep), "--out", str(tmp_path / "out"), "--metrics", "copurchase/recall@10"]) == 0
    out = capsys.readouterr().out
    assert "| model.fusion=attention | 0 1 | **0.6300 ± 0.0424** |" in out
    assert (tmp_path / "out" / "report.csv").exists()
    assert main(["report", str(tmp_path / "nothing-here")]) == 2


def _report_cli(capsys, *args) -> tuple[int, str, str]:
    capsys.readouterr()
    rc = main(["report", *map(str, args)])
    out, err = capsys.readouterr()
    return rc, out, err


def test_a_corrupt_run_file_is_named(sweep, tmp_path, capsys):
    (sweep / "2" / "metrics.json").write_text('{"copurchase/recall@10": 0.6')
    rc, out, err = _report_cli(capsys, sweep, "--out", tmp_path / "out")
    assert rc == 2 and out == "" and "Traceback" not in err
    assert err.startswith(f"gnn-mmsearch report: {sweep / '2' / 'metrics.json'}: unreadable (")
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "out").exists()
    (sweep / "2" / "metrics.json").write_text("[1, 2]")
    rc, _, err = _report_cli(capsys, sweep, "--out", tmp_path / "out")
    assert rc == 2 and err.strip() == f"gnn-mmsearch report: {sweep / '2' / 'metrics.json'}: unreadable (not a mapping)"


def test_an_unknown_metric_is_refused(sweep, tmp_path, capsys):
    rc, out, err = _report_cli(capsys, sweep, "--out", tmp_path / "out", "--metrics", "copurchase/recall@10",
                               "copurchase/recal@10")
    assert rc == 2 and out == "" and "Traceback" not in err
    assert err.strip() == ("gnn-mmsearch report: no run has the metric 'copurchase/recal@10' "
                           "(did you mean copurchase/recall@10?)")
    assert not (tmp_path / "out").exists()
    rc, _, err = _report_cli(capsys, sweep, "--out", tmp_path / "out", "--metrics", "nosuch/metric")
    assert rc == 2 and err.startswith("gnn-mmsearch report: no run has the metric 'nosuch/metric' (e.g. ")


def test_one_seed_has_no_std_and_seeds_read_the_same_in_both_tables(tmp_path):
    root = tmp_path / "multirun"
    _job(root, 0, ["model.fusion=concat"], 0, {"copurchase/recall@10": 0.5})
    _job(root, 1, ["model.fusion=attention"], 0, {"copurchase/recall@10": 0.6})
    _job(root, 2, ["model.fusion=attention"], 1, {"copurchase/recall@10": 0.7})
    written = write_report([root], metrics=["copurchase/recall@10"])
    md = written["markdown"].read_text()
    assert "| model.fusion=concat | 0 | 0.5000 |" in md and "±" not in md.split("model.fusion=concat")[1].split("\n")[0]
    assert "| model.fusion=attention | 0 1 | **0.6500 ± 0.0707** |" in md
    with open(written["csv"]) as f:
        rows = {r["configuration"]: r for r in csv.DictReader(f)}
    assert rows["model.fusion=concat"]["seeds"] == "0" and rows["model.fusion=attention"]["seeds"] == "0 1"
    assert rows["model.fusion=concat"]["copurchase/recall@10 std"] == ""
    assert float(rows["model.fusion=attention"]["copurchase/recall@10 std"]) == pytest.approx(0.0707, abs=1e-4)

"""The real pipeline end to end: `gnn-mmsearch run` on a small synthetic catalog with the real pretrained feature
extractors (no mocks), the run directory it writes, `gnn-mmsearch search` on it, a catalog in the on-disk format,
and inductive (cold-start) encoding of products the model never saw. The small run itself is the session fixture
`first_run` in conftest.py.
"""
from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import os
import re
import shutil
import subprocess
import sys
from collections import Counter
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from conftest import run_cli
from gnn_mmsearch.cli import main
from gnn_mmsearch.data import Catalog, Edge, Product
from gnn_mmsearch.index import load_index
from gnn_mmsearch.models import MultimodalGraphEncoder
from gnn_mmsearch.search import Searcher

HIT = re.compile(r"^\s*(\d+)\. (-?\d+\.\d{3})  (\S+)  (.*)  \[(.*)\]( +\$\d+\.\d\d)?$")


# ------------------------------------------------------------------------------------------ fixtures
# `env` (temp caches, no network, one torch thread), `first_run` (the small run: its directory and what it printed)
# and `run_dir` are session fixtures in conftest.py, shared with other modules so the pipeline runs once per session.

def overrides_of(run_dir: Path) -> list[str]:
    """The command-line overrides a run was started with (Hydra records them), its run directory left out."""
    return [o for o in OmegaConf.load(run_dir / ".hydra" / "overrides.yaml") if not o.startswith("hydra.")]


@pytest.fixture(scope="module")
def second_run(env, run_dir, tmp_path_factory) -> tuple[Path, str]:
    """The same command again (same data, same seed) into another directory."""
    second = tmp_path_factory.mktemp("runs") / "second"
    return second, run_cli(second, *overrides_of(run_dir))


@pytest.fixture(scope="module")
def catalog(run_dir) -> Catalog:
    return Catalog.load(json.loads((run_dir / "run.json").read_text())["catalog_root"])


@pytest.fixture(scope="module")
def encoder(run_dir) -> MultimodalGraphEncoder:
    return MultimodalGraphEncoder.from_pretrained(run_dir / "encoder")


def _json(path: Path):
    return json.loads(path.read_text())


# ------------------------------------------------------------------------------------- the run itself
def test_run_directory_contents(run_dir, catalog):
    assert (run_dir / "encoder" / "config.json").is_file() and (run_dir / "encoder" / "model.safetensors").is_file()
    assert (run_dir / "index").exists() and (run_dir / "history.json").is_file()
    assert overrides_of(run_dir) == ["data.num_products=200", "data.num_users=30", "data.image_size=48",
                                     "train.max_epochs=15"]

    metrics = _json(run_dir / "metrics.json")
    for key in ("copurchase/recall@10", "copurchase/ndcg@10", "copurchase/mrr@50", "text_query/recall@10",
                "text_query/ndcg@20", "index/recall@10"):
        assert isinstance(metrics[key], float) and 0.0 <= metrics[key] <= 1.0, key
    assert all("/" in k and "@" in k for k in metrics if k not in ("val/search", "val/objective"))  # task/metric@k
    served = (metrics["val/copurchase_served/recall@10"] + metrics["val/copurchase_served/recall@20"]) / 2
    assert metrics["val/objective"] == pytest.approx((served + metrics["val/search"]) / 2)

    cfg = OmegaConf.load(run_dir / "config.yaml")
    assert cfg.data.num_products == 200 and cfg.train.max_epochs == 15 and cfg.seed == 0
    assert "${" not in (run_dir / "config.yaml").read_text()  # resolved

    info = _json(run_dir / "run.json")
    assert info["seed"] == 0 and info["num_products"] == 200 == len(catalog)
    assert info["data_fingerprint"] == catalog.fingerprint()
    assert Path(info["catalog_root"]).is_relative_to(os.environ["GNN_MMSEARCH_CACHE"])
    assert info["epochs"] == len(_json(run_dir / "history.json")) == 15
    assert set(info["timings_s"]) >= {"features_s", "train_s", "total_s"}

    index = load_index(run_dir / "index")
    assert len(index) == 200 and all(pid in index for pid in catalog.ids)


def test_run_learns_something(run_dir):
    """Far above chance (recall@10 of a random ranking is about 10/200) and a faithful HNSW index."""
    metrics = _json(run_dir / "metrics.json")
    assert metrics["copurchase/recall@10"] > 0.3
    assert metrics["text_query/recall@10"] > 0.25
    assert metrics["index/recall@10"] >= 0.95


def test_run_prints_metrics_table_and_run_directory_last(first_run):
    run_dir, output = first_run
    lines = [line.rstrip() for line in output.splitlines()]
    header = next(i for i, line in enumerate(lines) if line.startswith("metric "))
    assert lines[header].split() == ["metric", "@1", "@5", "@10", "@20", "@50"]  # crossmodal/* at 1, 5, 10
    ks, width = (1, 5, 10, 20, 50), lines[header].index("@")  # columns of 9 characters, blank where a K is not reported
    end = lines.index("", header)  # the table ends at the first blank line
    table = {line[:width].strip(): {k: line[width + 9 * i:width + 9 * (i + 1)].strip() for i, k in enumerate(ks)}
             for line in lines[header + 1:end]}
    assert {f"{task}/{m}" for task in ("copurchase", "text_query", "crossmodal")
            for m in ("recall", "precision", "ndcg", "mrr")} | {"index/recall"} <= set(table)
    metrics = _json(run_dir / "metrics.json")
    for name, values in table.items():  # every row is in metrics.json, every metric in the table
        for k, value in values.items():
            assert (float(value) if value else None) == pytest.approx(metrics.get(f"{name}@{k}"), abs=1e-4), (name, k)
    assert {key.rpartition("@")[0] for key in metrics
            if "@" in key and not key.startswith(("baseline/", "graph_space/", "bound/"))} \
        == set(table)
    side = lines[end + 1:lines.index("", end + 1)]  # then what is served next to the graph space and every baseline
    assert side[0] == "side by side (baselines: eval.baselines):" and side[1].split()[:2] == ["model", "text_query/recall@10"]
    rows = {line[:line.index("  ")]: line.split()[-5:] for line in side[2:]}
    assert set(rows) == {"served (trained)", "graph space", "bm25", "bm25_title", "raw_text", "raw_image", "raw_concat",
                         "hybrid", "popularity", "common_neighbours", "query-set ceiling"}
    assert float(rows["bm25"][0]) == pytest.approx(metrics["baseline/bm25/text_query/recall@10"], abs=1e-4)
    assert float(rows["served (trained)"][0]) == pytest.approx(metrics["text_query/recall@10"], abs=1e-4)
    assert float(rows["query-set ceiling"][0]) == pytest.approx(metrics["bound/text_query/recall@10"], abs=1e-4)
    lines = [line for line in lines if line.strip()]
    examples = re.findall(r'^search "(.*)":$', output, re.MULTILINE)  # taken from this run's catalog
    titles = [set(p.title.lower().split()) for p in Catalog.load(_json(run_dir / "run.json")["catalog_root"]).products
              if p.title]
    assert len(examples) == 3 and all(any(set(q.split()) <= t for t in titles) for q in examples), examples
    assert lines[-1] == f"run directory: {run_dir.resolve()}"


def test_second_run_reuses_every_feature_and_repeats_the_numbers(first_run, second_run):
    first, second = _json(first_run[0] / "run.json"), _json(second_run[0] / "run.json")
    assert first["features"]["image_extracted"] > 0 and first["features"]["text_extracted"] > 0
    feats = second["features"]
    assert feats["image_extracted"] == 0 and feats["text_extracted"] == 0
    assert feats["image_reused"] == first["features"]["image_extracted"] > 0
    assert feats["text_reused"] == first["features"]["text_extracted"] > 0
    assert second["data_fingerprint"] == first["data_fingerprint"]
    # same seed, same data, same features: the same numbers (CPU)
    assert _json(second_run[0] / "metrics.json") == _json(first_run[0] / "metrics.json")
    assert _json(second_run[0] / "history.json") == _json(first_run[0] / "history.json")


# ------------------------------------------------------------------------------------------- search
def search(capsys, *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    rc = main(["search", *args])
    out, err = capsys.readouterr()
    return rc, out, err


def hits(out: str) -> list[tuple[str, str]]:
    """(id, category) of each result line."""
    parsed = [HIT.match(line) for line in out.splitlines()[1:]]
    assert all(parsed), out
    return [(m.group(3), m.group(5)) for m in parsed]


def test_search_text(run_dir, capsys):
    rc, out, err = search(capsys, "red leather wallet", "--run", str(run_dir), "-k", "5")
    assert rc == 0, err
    assert out.splitlines()[0] == f"run: {run_dir}"
    assert len(hits(out)) == 5 and len(set(hits(out))) == 5


def test_search_text_finds_the_right_category(run_dir, capsys):
    rc, out, _ = search(capsys, "wireless mouse", "--run", str(run_dir), "-k", "5")
    assert rc == 0
    assert Counter(cat for _, cat in hits(out)).most_common(1)[0][0] == "Computing > Mice"


def test_search_product(run_dir, catalog, capsys):
    pid = catalog.ids[7]
    rc, out, err = search(capsys, "--product", pid, "--run", str(run_dir), "-k", "6")
    assert rc == 0, err
    ids = [i for i, _ in hits(out)]
    assert len(ids) == 6 and pid not in ids
    # graph similarity + common neighbours + popularity with the weights chosen on validation, exactly
    copurchase = Searcher.from_run(run_dir).copurchase
    emb = torch.from_numpy(load_index(run_dir / "index").vectors(catalog.ids))
    scores = copurchase.weights.scores(emb)(torch.tensor([7]), copurchase.graph)[0]
    scores[7] = -float("inf")
    assert ids == [catalog.ids[i] for i in scores.topk(6).indices.tolist()]
    assert _json(run_dir / "run.json")["copurchase_weights"] == dataclasses.asdict(copurchase.weights)


def test_search_image(run_dir, catalog, capsys):
    product = next(p for p in catalog.products if p.image_path)
    rc, out, err = search(capsys, "--image", str(catalog.image_file(product)), "--run", str(run_dir))
    assert rc == 0, err
    assert len(hits(out)) == 10


def test_search_text_and_image(run_dir, catalog, capsys):
    product = next(p for p in catalog.products if p.image_path and p.category[1] == "Mugs")
    rc, out, err = search(capsys, "coffee mug", "--image", str(catalog.image_file(product)), "--run", str(run_dir))
    assert rc == 0, err
    assert len(hits(out)) == 10


def test_search_mmr_diversifies(run_dir, capsys):
    rc, plain, _ = search(capsys, "running shoes", "--run", str(run_dir))
    rc_mmr, diverse, err = search(capsys, "running shoes", "--run", str(run_dir), "--mmr-lambda", "0.5")
    assert rc == rc_mmr == 0, err
    plain_ids, mmr_ids = [i for i, _ in hits(plain)], [i for i, _ in hits(diverse)]
    assert len(mmr_ids) == len(set(mmr_ids)) == 10
    assert mmr_ids[0] == plain_ids[0] and mmr_ids != plain_ids


def test_search_filter(run_dir, capsys):
    rc, out, err = search(capsys, "espresso machine", "--run", str(run_dir), "--filter", "category=Mobile")
    assert rc == 0, err
    found = hits(out)
    assert len(found) == 10 and all(cat.startswith("Mobile > ") for _, cat in found)


def test_search_uses_the_newest_run_by_default(run_dir, tmp_path, monkeypatch, capsys):
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "only").symlink_to(run_dir, target_is_directory=True)
    (tmp_path / "runs" / "newer_topn").mkdir()  # a newer top-N recommendation run has nothing to search
    (tmp_path / "runs" / "newer_topn" / "run.json").write_text("{}")
    for job in (tmp_path / "runs" / "sweep" / "0", tmp_path / "multirun" / "2026-01-01" / "0"):  # newer sweep jobs
        shutil.copytree(run_dir, job, ignore=shutil.ignore_patterns("wandb"))
        (job / "run.json").touch()
    monkeypatch.chdir(tmp_path)
    rc, out, err = search(capsys, "--product", "P00001", "-k", "3")
    assert rc == 0, err
    assert out.startswith("run: runs/only")
    assert len(hits(out)) == 3


@pytest.fixture(scope="module")
def corrupt_image(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("bad") / "corrupt.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 8)
    return path


@pytest.mark.parametrize("args, message", [
    (['""'], "empty text query"),
    (["   "], "empty text query"),
    (["--product", "NO-SUCH-ID"], "unknown product id 'NO-SUCH-ID'"),
    (["--image", "{corrupt}"], "cannot read query image"),
    (["--image", "{missing}"], "cannot read query image"),
    (["mug", "--filter", "price<>3"], "bad filter clause"),
    (["mug", "--filter", "category="], "bad filter clause"),
    (["mug", "--run", "{nowhere}"], "is not a finished gnn-mmsearch run"),
    ([], "empty query: give a text query, an image, a video, a product id or a history"),
    (["mug", "--product", "P00001"], "cannot be combined"),
    (["mug", "-k", "0"], "k must be at least 1, got 0"),
    (["mug", "--mmr-lambda", "1.5"], "MMR lambda must be between 0 and 1, got 1.5"),
], ids=["empty", "whitespace", "unknown-product", "corrupt-image", "missing-image", "bad-filter", "empty-category",
        "no-run-dir", "nothing", "product-and-text", "k0", "mmr-range"])
def test_search_bad_input_is_a_clear_error(run_dir, corrupt_image, tmp_path, capsys, args, message):
    args = [a.format(corrupt=corrupt_image, missing=tmp_path / "missing.png", nowhere=tmp_path / "nowhere")
            for a in args]
    args = ["" if a == '""' else a for a in args]
    if "--run" not in args:
        args += ["--run", str(run_dir)]
    rc, out, err = search(capsys, *args)
    assert rc == 2
    assert out == ""
    assert err.startswith("gnn-mmsearch search: ") and message in err, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_search_bad_input_in_a_real_process(run_dir, env):
    """The installed entry point: exit code 2, one line on stderr, no traceback."""
    proc = subprocess.run([sys.executable, "-m", "gnn_mmsearch", "search", "", "--run", str(run_dir)],
                          capture_output=True, text=True, timeout=120, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("gnn-mmsearch search: empty text query")


def test_multirun_sweep_over_model_options(env, run_dir, tmp_path):
    """``run -m``: one job per combination, each with its own run directory and config (features come from the
    cache, so this is cheap)."""
    sweep = tmp_path / "sweep"
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        data = [o for o in overrides_of(run_dir) if o.startswith("data.")]
        rc = main(["run", "-m", f"hydra.sweep.dir={sweep}", *data, "train.max_epochs=2", "eval.examples=[]",
                   "model.fusion=concat,weighted", "model.gnn.conv=gat", "model.modalities=[text]", "seed=3"])
    assert rc == 0
    jobs = sorted(p.parent for p in sweep.glob("*/run.json"))
    assert [j.name for j in jobs] == ["0", "1"]
    fusions = set()
    for job in jobs:
        enc = _json(job / "encoder" / "config.json")
        assert enc["conv"] == "gat" and enc["modalities"] == ["text"]
        fusions.add(enc["fusion"])
        assert _json(job / "run.json")["seed"] == 3
        assert _json(job / "run.json")["features"]["image_extracted"] == 0
        assert 0.0 <= _json(job / "metrics.json")["copurchase/recall@10"] <= 1.0
    assert fusions == {"concat", "weighted"}


@pytest.mark.slow
def test_run_as_a_separate_process_repeats_the_numbers(first_run, env, tmp_path):
    """``python -m gnn_mmsearch run`` in a fresh process (cwd outside the repo, nothing written there) gives the
    same metrics as the in-process run with the same seed."""
    run_dir = tmp_path / "proc-run"
    proc = subprocess.run([sys.executable, "-m", "gnn_mmsearch", "run", f"hydra.run.dir={run_dir}",
                           *overrides_of(first_run[0])],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip().splitlines()[-1] == f"run directory: {run_dir.resolve()}"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["proc-run"]
    assert _json(run_dir / "metrics.json") == _json(first_run[0] / "metrics.json")
    assert _json(run_dir / "run.json")["features"]["image_extracted"] == 0


def _unwritable(tmp_path: Path) -> Path:
    """A folder no process can create: its parent is a file (works as root too, unlike permission bits)."""
    (tmp_path / "a_file").write_text("")
    return tmp_path / "a_file" / "folder"


def test_a_run_directory_that_cannot_be_made_is_one_line(env, tmp_path, capsys):
    target = _unwritable(tmp_path) / "run"
    assert main(["run", f"hydra.run.dir={target}", "logger=none"]) == 2
    out, err = capsys.readouterr()
    assert err.strip() == f"gnn-mmsearch run: cannot write the run directory {target}: {tmp_path / 'a_file'} is not a folder"
    assert "Traceback" not in out + err
    assert main(["run", "-m", f"hydra.sweep.dir={target}", "logger=none", "seed=0,1"]) == 2
    assert "cannot write the run directory" in capsys.readouterr().err


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root may write any folder")
def test_a_read_only_run_directory_is_one_line(env, tmp_path, capsys):
    parent = tmp_path / "read-only"
    parent.mkdir(mode=0o555)
    assert main(["run", f"hydra.run.dir={parent / 'run'}", "logger=none"]) == 2
    assert capsys.readouterr().err.strip() == \
        f"gnn-mmsearch run: cannot write the run directory {parent / 'run'}: permission denied on {parent}"


def test_a_cache_folder_that_cannot_be_written_is_one_line(run_dir, tmp_path, monkeypatch, capsys):
    cache = _unwritable(tmp_path)
    monkeypatch.setenv("GNN_MMSEARCH_CACHE", str(cache))
    target = tmp_path / "run"
    assert main(["run", f"hydra.run.dir={target}", *overrides_of(run_dir), "logger=none"]) == 2
    out, err = capsys.readouterr()
    assert err.strip() == (f"gnn-mmsearch run: Not a directory: {cache / 'catalogs'} (the catalog and feature cache: "
                           "set GNN_MMSEARCH_CACHE or cache_dir= to a writable folder)")
    assert "Traceback" not in out + err and not target.exists()


def test_unknown_command_and_help(capsys):
    assert main(["frobnicate"]) == 2
    assert "unknown command 'frobnicate'" in capsys.readouterr().err
    assert main(["--help"]) == 0 and "search [QUERY]" in capsys.readouterr().out


# --------------------------------------------------------------------------- a catalog directory
def test_directory_catalog_with_bad_records(env, catalog, run_dir, tmp_path):
    """A catalog in the on-disk format with a corrupt image, a product with neither text nor image (linked), two
    with neither text, image nor link and a malformed line: the run finishes, run.json counts what was skipped and the
    log warns that the two unlinked ones cannot be told apart."""
    root = tmp_path / "my_catalog"
    shutil.copytree(catalog.root / "images", root / "images")
    (root / "images" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 definitely not a jpeg" * 20)
    extra = [Product("X-BROKEN-IMAGE", title="teal canvas yoga mat", category=["Yoga", "Yoga Mats"],
                     image_path="images/broken.jpg"),
             Product("X-EMPTY", category=["Pets", "Dog Toys"], price=3.0),
             Product("X-BLANK-1", price=1.0), Product("X-BLANK-2", brand="Acme")]
    edges = catalog.edges + [Edge("X-BROKEN-IMAGE", catalog.ids[0], "also_buy"),
                             Edge("X-EMPTY", catalog.ids[1], "also_buy")]
    mine = Catalog(catalog.products + extra, edges, catalog.interactions, name="mine")
    mine.save(root)
    with open(root / "products.jsonl", "a", encoding="utf-8") as f:
        f.write('{"id": "X-HALF", "title": "truncated line\n')

    base = _json(run_dir / "run.json")["features"]
    out_dir = tmp_path / "run"
    output = run_cli(out_dir, "data=directory", f"data.path={root}", "train.max_epochs=3", "eval.examples=[]")
    assert output.strip().splitlines()[-1] == f"run directory: {out_dir.resolve()}"
    info = _json(out_dir / "run.json")
    assert info["num_products"] == 204 and info["catalog"] == "mine"
    assert "2 products have no text, image or link: they all get one vector in the graph space" in output
    assert Path(info["catalog_root"]) == root.resolve()
    feats = info["features"]
    assert feats["image_unreadable"] == 1
    assert feats["text_missing"] == base["text_missing"] + 3 >= 3
    assert feats["image_missing"] == base["image_missing"] + 3
    assert feats["image_extracted"] == 0 and feats["image_reused"] == base["image_extracted"]  # same image bytes
    assert feats["text_extracted"] == 1  # only the new title
    metrics = _json(out_dir / "metrics.json")
    assert all(np.isfinite(v) for v in metrics.values())
    assert "X-EMPTY" in load_index(out_dir / "index")


# ------------------------------------------------------------------------------- inductive encoding
def _new_products(catalog: Catalog, directory: Path, per_category: int = 1) -> list[Product]:
    """Products the model never saw, made from catalog products of several categories: a copy of the image
    (a new file), the title with the brand swapped and the description reworded."""
    directory.mkdir(parents=True, exist_ok=True)
    by_category: dict[str, list[Product]] = {}
    for p in catalog.products:
        if p.image_path and p.title and p.description:
            by_category.setdefault(p.category[1], []).append(p)
    new = []
    for category, members in sorted(by_category.items()):
        if len(members) < 6:  # categories with enough members to fill a top 5
            continue
        for src in members[:per_category]:
            image = directory / f"new-{src.id}.png"
            shutil.copyfile(catalog.image_file(src), image)
            words = [w for w in src.title.split() if w != src.brand]
            new.append(Product(
                id=f"NEW-{src.id}", title=" ".join(["Novatek", *words]),
                description=src.description.replace(src.brand or "\0", "Novatek").replace("everyday", "daily"),
                brand="Novatek", category=list(src.category), price=src.price, image_path=str(image)))
    return new


def test_cold_start_products_land_next_to_their_category(encoder, run_dir, catalog, tmp_path):
    new = _new_products(catalog, tmp_path / "new")
    assert len(new) >= 8 and not any(p.id in catalog.index_of for p in new)
    emb = encoder.encode_products(new)  # no edges, no cache dir: content only
    assert emb.shape == (len(new), encoder.config.out_dim)
    torch.testing.assert_close(emb.norm(dim=1), torch.ones(len(new)))
    result = load_index(run_dir / "index").search(emb.numpy(), k=5)
    category = {p.id: p.category for p in catalog.products}
    same_category = [sum(category[i][1] == p.category[1] for i in ids) for p, ids in zip(new, result.ids)]
    same_domain = [sum(category[i][0] == p.category[0] for i in ids) for p, ids in zip(new, result.ids)]
    assert sum(s >= 3 for s in same_category) >= 0.7 * len(new), same_category
    assert sum(s >= 3 for s in same_domain) >= len(new) - 1, same_domain
    # the product each one was made from is among its nearest neighbours for most of them
    assert sum(p.id[4:] in ids for p, ids in zip(new, result.ids)) >= 0.7 * len(new)


def test_encode_products_with_edges_to_catalog_products(encoder, env, run_dir, catalog, tmp_path):
    new = _new_products(catalog, tmp_path / "new")[:2]
    anchor = catalog.ids[3]
    products = [replace(p, image_path=str(catalog.image_file(p)) if p.image_path else None)
                for p in catalog.products] + new
    edges = catalog.edges + [Edge(new[0].id, anchor, "also_buy"), Edge(new[0].id, new[1].id, "bought_together")]
    emb = encoder.encode_products(products, edges, cache_dir=env / "features")
    assert emb.shape == (len(catalog) + 2, encoder.config.out_dim)
    torch.testing.assert_close(emb.norm(dim=1), torch.ones(len(products)))

    # the graph pulls the new product towards the catalog product it is linked to
    cold = encoder.encode_products(new[:1], cache_dir=env / "features")[0]
    linked = emb[len(catalog)]
    anchor_vec = torch.from_numpy(load_index(run_dir / "index").vectors([anchor])[0])
    assert not torch.allclose(linked, cold)
    assert linked @ anchor_vec > cold @ anchor_vec

    # catalog products more than two hops (gnn_layers) from the new ones keep their served embeddings
    graph = catalog.to_pyg(encoder.config.graph_edge_types).edge_index
    near = {catalog.index_of[anchor]}
    for _ in range(encoder.config.gnn_layers):
        near |= {int(d) for s, d in graph.t().tolist() if s in near}
    far = [i for i in range(len(catalog)) if i not in near]
    assert len(far) > 100
    served = load_index(run_dir / "index").vectors([catalog.ids[i] for i in far])
    np.testing.assert_allclose(emb[far].numpy(), served, atol=1e-4)


@pytest.mark.slow
def test_readme_example_query_on_the_default_catalog(env, tmp_path):
    """The README's first example: the top 5 of "red leather wallet" on the default catalog are wallets or
    handbags that are red or leather, by the catalog's ground truth."""
    run_dir = tmp_path / "default"
    run_cli(run_dir, "logger=none", "eval.examples=[]")
    searcher = Searcher.from_run(run_dir)
    truth = searcher.catalog.meta["ground_truth"]
    hits = searcher.search(text="red leather wallet", k=5)
    assert len(hits) == 5
    for hit in hits:
        row = searcher.catalog.index_of[hit.id]
        assert hit.category.split(" > ")[-1] in ("Wallets", "Handbags"), hit
        assert truth["color"][row] == "red" or truth["material"][row] == "leather", hit

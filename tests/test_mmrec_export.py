"""``gnn-mmsearch export-mmrec`` (Amazon 2014 / 2018 / 2023 -> MMRec folder) and ``data=mmrec_synthetic``: k-core,
per-user splits, id mappings, feature rows and masks, bad input, and a round trip through ``task=recommend``."""
from __future__ import annotations

import csv
import gzip
import json
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import run_cli
from gnn_mmsearch.cli import main
from gnn_mmsearch.data import Interaction
from gnn_mmsearch.data.mmrec import load_inter
from gnn_mmsearch.data.mmrec_export import ExportOptions, export_mmrec

COLOURS = ["red", "blue", "green", "black", "white", "yellow"]


def _dataset(seed: int = 0) -> tuple[list[dict], list[dict]]:
    """18 products (P17 without title or description) and 30 users with 6-14 reviews each, plus an item reviewed
    twice (P99: outside the 5-core) and a user with 3 reviews (outside it); U00 reviews P00 twice, the later line
    being the earlier review."""
    rng = np.random.default_rng(seed)
    products = [{"asin": f"P{k:02d}", "title": f"{COLOURS[k % 6]} toy number {k}" if k != 17 else None}
                for k in range(18)] + [{"asin": "P99", "title": "rare toy"}]
    reviews = []
    for u in range(30):
        items = rng.choice(18, int(rng.integers(6, 15)), replace=False)
        for j, k in enumerate(items):
            reviews.append({"user": f"U{u:02d}", "item": f"P{k:02d}", "time": 1_400_000_000 + 1000 * u + 10 * j,
                            "rating": float(rng.integers(1, 6))})
    reviews += [{"user": "U00", "item": "P99", "time": 1_500_000_000, "rating": 5.0},
                {"user": "U01", "item": "P99", "time": 1_500_000_001, "rating": 5.0}]
    reviews += [{"user": "U98", "item": f"P{k:02d}", "time": 1_500_000_000 + k, "rating": 3.0} for k in range(3)]
    first = next(r for r in reviews if r["user"] == "U00")
    reviews.append({**first, "time": first["time"] - 5, "rating": 1.0})  # earlier, listed later: this one is kept
    reviews.append({**first, "time": first["time"] + 5, "rating": 2.0})  # later: dropped
    return products, reviews


def _meta_line(fmt: str, p: dict) -> str:
    if fmt == "2014":
        return repr({"asin": p["asin"], "title": p["title"], "categories": [["Toys"]]})
    if fmt == "2018":
        return json.dumps({"asin": p["asin"], "title": p["title"], "category": ["Toys"]})
    return json.dumps({"parent_asin": p["asin"], "title": p["title"], "main_category": "Toys", "images": []})


def _review_line(fmt: str, r: dict) -> str:
    if fmt == "2023":
        return json.dumps({"user_id": r["user"], "parent_asin": r["item"], "asin": r["item"] + "-v",
                           "rating": r["rating"], "timestamp": r["time"] * 1000})
    return json.dumps({"reviewerID": r["user"], "asin": r["item"], "overall": r["rating"],
                       "unixReviewTime": r["time"]})


def write_amazon(folder: Path, fmt: str, gz: bool = False, seed: int = 0) -> tuple[Path, Path]:
    """The dataset as Amazon ``fmt`` metadata and reviews files (a malformed line and an unknown item in each)."""
    products, reviews = _dataset(seed)
    folder.mkdir(parents=True, exist_ok=True)
    files = []
    for kind, lines in (("meta", [_meta_line(fmt, p) for p in products]),
                        ("reviews", [_review_line(fmt, r) for r in reviews]
                         + [_review_line(fmt, {"user": "U00", "item": "NOPE", "time": 1, "rating": 1.0})])):
        path = folder / f"{kind}_{fmt}.json{'l' if fmt == '2023' else ''}{'.gz' if gz else ''}"
        text = "\n".join([*lines, "{'broken"]) + "\n"
        path.write_bytes(gzip.compress(text.encode()) if gz else text.encode())
        files.append(path)
    return files[0], files[1]


def read_export(out: Path) -> tuple[list[dict], dict[str, int], dict[str, int]]:
    """The ``.inter`` rows (typed) and the user / item mappings (original id -> int id)."""
    def table(path: Path) -> list[dict]:
        with open(path, newline="", encoding="utf-8") as f:
            return list(csv.DictReader(f, delimiter="\t"))

    rows = [{"u": int(r["userID"]), "i": int(r["itemID"]), "rating": float(r["rating"]) if r["rating"] else None,
             "t": float(r["timestamp"]), "x": int(r["x_label"])} for r in table(out / f"{out.name}.inter")]
    users = {r["user_id"]: int(r["userID"]) for r in table(out / "u_id_mapping.csv")}
    items = {r["asin"]: int(r["itemID"]) for r in table(out / "i_id_mapping.csv")}
    return rows, users, items


def cli(capsys, *args: str) -> tuple[int, str, str]:
    rc = main(["export-mmrec", *args])
    out, err = capsys.readouterr()
    return rc, out, err


@pytest.fixture(scope="module")
def exported(env, tmp_path_factory) -> tuple[Path, Path]:
    """A 2018 export with features (the real offline extractors); P00 and P03 have images, P05's is corrupt."""
    root = tmp_path_factory.mktemp("export")
    meta, reviews = write_amazon(root / "raw", "2018")
    images = root / "images"
    images.mkdir()
    Image.new("RGB", (40, 40), "red").save(images / "P00.jpg")
    Image.new("RGB", (40, 40), "blue").save(images / "P03.jpg")
    (images / "P05.jpg").write_bytes(b"not a jpeg")
    assert main(["export-mmrec", "--format", "2018", "--meta", str(meta), "--reviews", str(reviews),
                 "--images", str(images), "--out", str(root / "toys"), "--device", "cpu"]) == 0
    return root / "toys", images


def test_the_three_formats_plain_or_gzipped_give_the_same_export(env, tmp_path, capsys):
    outputs = []
    for fmt, gz in (("2014", False), ("2018", True), ("2023", True), ("2023", False)):
        meta, reviews = write_amazon(tmp_path / f"raw{fmt}{gz}", fmt, gz)
        out = tmp_path / f"out{fmt}{gz}" / "toys"
        rc, printed, err = cli(capsys, "--format", fmt, "--meta", str(meta), "--reviews", str(reviews),
                               "--out", str(out), "--no-features")
        assert rc == 0 and "Traceback" not in err
        outputs.append(read_export(out))
        assert sorted(p.name for p in out.iterdir()) == ["export.json", "i_id_mapping.csv", "toys.inter",
                                                          "u_id_mapping.csv"]
    assert all(o == outputs[0] for o in outputs)
    report = json.loads((out / "export.json").read_text())["report"]
    assert report["malformed_reviews"] == 1 and report["reviews_unknown_item"] == 1 and report["duplicates"] == 2
    assert report["kcore_dropped_users"] == 1 and report["kcore_dropped_items"] == 1  # U98 and P99
    assert printed.startswith(f"30 users, 18 items, {report['interactions']} interactions (train ")
    assert f"exported: {out}" in printed


def test_mappings_match_the_reviews_and_the_earliest_duplicate_is_kept(env, tmp_path, capsys):
    meta, reviews = write_amazon(tmp_path / "raw", "2018")
    out = tmp_path / "toys"
    assert cli(capsys, "--format", "2018", "--meta", str(meta), "--reviews", str(reviews), "--out", str(out),
               "--no-features")[0] == 0
    rows, users, items = read_export(out)
    assert list(users) == sorted(users) and list(users.values()) == list(range(30))
    assert list(items) == sorted(items) and list(items.values()) == list(range(18))
    user_of, item_of = {v: k for k, v in users.items()}, {v: k for k, v in items.items()}
    earliest = {}
    for r in _dataset()[1]:
        key = (r["user"], r["item"])
        if key not in earliest or r["time"] < earliest[key]["time"]:
            earliest[key] = r
    kept = {k: v for k, v in earliest.items() if k[0] != "U98" and k[1] != "P99"}
    assert {(user_of[r["u"]], item_of[r["i"]]): (r["t"], r["rating"]) for r in rows} == {
        k: (float(v["time"]), v["rating"]) for k, v in kept.items()}
    assert earliest[("U00", next(k[1] for k in earliest if k[0] == "U00"))]["rating"] == 1.0  # the earlier duplicate
    assert [(r["u"], r["x"], r["i"]) for r in rows] == sorted((r["u"], r["x"], r["i"]) for r in rows)


def _interactions(n_users: int = 40, n_items: int = 60, seed: int = 1) -> list[Interaction]:
    rng = np.random.default_rng(seed)
    out = []
    for u in range(n_users):
        for j, k in enumerate(rng.choice(n_items, int(rng.integers(5, 31)), replace=False)):
            out.append(Interaction(f"u{u:03d}", f"i{k:03d}", float(rng.integers(0, 10**6)), 4.0))
    return out


def _labels(out: Path) -> dict[int, list[tuple[float, int]]]:
    per_user = defaultdict(list)
    for r in read_export(out)[0]:
        per_user[r["u"]].append((r["t"], r["x"]))
    return per_user


def test_per_user_split_follows_mmrec_counts(tmp_path):
    data = _interactions()
    export_mmrec(data, None, tmp_path / "d", options=ExportOptions(k_core=0))
    for u, rows in _labels(tmp_path / "d").items():
        n, counts = len(rows), Counter(x for _, x in rows)
        held = int(n * 0.2) if n >= 10 else 2  # MMRec's 1splitting.ipynb
        assert (counts[1], counts[2]) == (held // 2, held - held // 2), (u, n, counts)
    few = [Interaction("a", f"i{k}", k, 1.0) for k in range(2)] + [Interaction("b", f"i{k}", k, 1.0) for k in range(3)]
    report = export_mmrec(few, None, tmp_path / "few", options=ExportOptions(k_core=0))
    assert report.users_all_train == 1 and report.splits == {"train": 3, "valid": 1, "test": 1}


def test_split_is_seeded_canonical_and_chronological_on_request(tmp_path):
    data = _interactions()
    export_mmrec(data, None, tmp_path / "a", options=ExportOptions(k_core=0, seed=3))
    export_mmrec(data[::-1], None, tmp_path / "b", options=ExportOptions(k_core=0, seed=3))
    export_mmrec(data, None, tmp_path / "c", options=ExportOptions(k_core=0, seed=4))
    assert read_export(tmp_path / "a") == read_export(tmp_path / "b")  # input order does not matter
    assert _labels(tmp_path / "a") != _labels(tmp_path / "c")
    export_mmrec(data, None, tmp_path / "t", options=ExportOptions(k_core=0, chronological=True))
    for rows in _labels(tmp_path / "t").values():
        times = {x: [t for t, label in rows if label == x] for x in (0, 1, 2)}
        assert max(times[0]) <= min(times[1]) and max(times[1]) <= min(times[2])
    assert _labels(tmp_path / "a") != _labels(tmp_path / "t")  # the default is a shuffle, not time order
    export_mmrec(data, None, tmp_path / "s", options=ExportOptions(k_core=0, split=(0.6, 0.2, 0.2)))
    for rows in _labels(tmp_path / "s").values():
        counts, held = Counter(x for _, x in rows), int(len(rows) * 0.4 + 1e-9)  # n >= 5: held >= 2
        assert (counts[1], counts[2]) == (held // 2, held - held // 2)


def test_k_core_iterates_to_a_fixed_point(tmp_path):
    pairs = [("u1", "A"), ("u1", "B"), ("u2", "A"), ("u2", "B"), ("u3", "A"), ("u3", "C"), ("u4", "C")]
    report = export_mmrec([Interaction(u, i, 1.0) for u, i in pairs], None, tmp_path / "d",
                          options=ExportOptions(k_core=2))
    # u4 goes first, then C (one reviewer left), then u3 (one item left)
    rows, users, items = read_export(tmp_path / "d")
    assert users == {"u1": 0, "u2": 1} and items == {"A": 0, "B": 1} and len(rows) == 4
    assert (report.kcore_dropped_users, report.kcore_dropped_items, report.kcore_dropped_interactions) == (2, 1, 3)
    with pytest.raises(ValueError, match="no interaction left after the 3-core"):
        export_mmrec([Interaction(u, i, 1.0) for u, i in pairs], None, tmp_path / "e", options=ExportOptions(k_core=3))
    assert not (tmp_path / "e").exists() and [p.name for p in tmp_path.iterdir()] == ["d"]


def test_cold_items_have_no_training_interaction(tmp_path):
    report = export_mmrec(_interactions(), None, tmp_path / "d", options=ExportOptions(k_core=0, cold_item_ratio=0.2))
    rows = read_export(tmp_path / "d")[0]
    train_items = {r["i"] for r in rows if r["x"] == 0}
    cold = {r["i"] for r in rows} - train_items
    assert report.cold_items == 12 and len(cold) == 12 and {r["x"] for r in rows if r["i"] in cold} == {1, 2}


def test_feature_rows_follow_item_ids_and_masks_mark_missing_features(exported):
    from gnn_mmsearch.features import ImageEncoder, TextEncoder

    out, images = exported
    _, _, items = read_export(out)
    image, text = np.load(out / "image_feat.npy"), np.load(out / "text_feat.npy")
    mask = np.load(out / "feat_mask.npz")
    assert image.shape == (18, 1280) and text.shape == (18, 384) and image.dtype == np.float32
    has_image = {items[a] for a in ("P00", "P03")}
    assert set(np.flatnonzero(mask["image"])) == has_image  # P05's file does not decode
    assert set(np.flatnonzero(~mask["text"])) == {items["P17"]}  # no title, no description
    assert not image[~mask["image"]].any() and not text[~mask["text"]].any()
    direct, _ = ImageEncoder().encode([images / "P03.jpg"], progress=False)
    np.testing.assert_allclose(image[items["P03"]], direct[0], rtol=1e-4, atol=1e-5)
    assert not np.allclose(image[items["P00"]], direct[0])
    direct, _ = TextEncoder().encode(["blue toy number 7. Toys"], progress=False)
    np.testing.assert_allclose(text[items["P07"]], direct[0], rtol=1e-4, atol=1e-5)
    info = json.loads((out / "export.json").read_text())
    assert info["report"]["items_with_image"] == 2 and info["report"]["items_with_text"] == 17


def test_round_trip_through_the_recommend_job(exported, tmp_path):
    out, _ = exported
    data = load_inter(out / "toys.inter")
    assert set(data.item_features) == {"image", "text"} and data.num_items == 18
    run_dir = tmp_path / "run"
    run_cli(run_dir, "task=recommend", f"data.path={out / 'toys.inter'}", "recommender=mmgraph",
            "train.max_epochs=1", "logger=none")
    metrics = json.loads((run_dir / "metrics.json").read_text())
    info = json.loads((run_dir / "run.json").read_text())
    assert "test/recall@20" in metrics and info["num_items"] == 18 and info["num_users"] == 30
    assert info["load_report"]["nonfinite_feature_rows"] == {"image": 0, "text": 0}  # the features were read


@pytest.mark.parametrize("args,message", [
    (["--format", "2020"], "unknown Amazon format '2020' (choose 2014 | 2018 | 2023)"),
    (["--meta", "{tmp}/nope.json"], "metadata file {tmp}/nope.json not found"),
    (["--reviews", "{tmp}/nope.json"], "reviews file {tmp}/nope.json not found"),
    (["--meta", "{raw}/meta_2023.jsonl"], "{raw}/meta_2023.jsonl does not read as format 2018 metadata: it looks like "
                                          "format 2023"),
    (["--k-core", "40"], "no interaction left after the 40-core of 328 (user, item) pairs: lower the k-core (0 = off)"),
    (["--k-core", "-1"], "--k-core must be >= 0, got -1"),
    (["--split", "0.8,0.2"], "--split must be three ratios above 0 (train,valid,test), got [0.8, 0.2]"),
    (["--split", "a,b,c"], "--split 'a,b,c': expected three ratios like 0.8,0.1,0.1"),
    (["--out", "{raw}"], "{raw} already exists: give a new folder (an export never writes over one)"),
    (["--out", "{raw}/meta_2018.json/x"], "cannot write {raw}/meta_2018.json/x: {raw}/meta_2018.json is not a "
                                          "writable folder"),
])
def test_bad_input_is_one_line_and_exit_2(env, tmp_path, capsys, args, message):
    raw = tmp_path / "raw"
    meta, reviews = write_amazon(raw, "2018")
    write_amazon(raw, "2023")
    given = {"--format": "2018", "--meta": str(meta), "--reviews": str(reviews), "--out": str(tmp_path / "out"),
             "--no-features": None}
    for key, value in zip(args[::2], args[1::2]):
        given[key] = value.format(tmp=tmp_path, raw=raw)
    argv = [x for k, v in given.items() for x in ([k] if v is None else [k, v])]
    rc, out, err = cli(capsys, *argv)
    assert rc == 2 and err == f"gnn-mmsearch export-mmrec: {message.format(tmp=tmp_path, raw=raw)}\n", err
    assert "Traceback" not in out + err and not (tmp_path / "out").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["raw"]  # no temporary folder left behind


def test_mmrec_synthetic_is_made_once_in_the_cache_with_cold_items(env, tmp_path):
    small = ["task=recommend", "data=mmrec_synthetic", "data.num_products=200", "data.num_users=80",
             "data.image_size=48", "data.cold_item_ratio=0.1", "recommender=mmgraph", "train.max_epochs=2",
             "logger=none"]
    run_cli(tmp_path / "a", *small)
    folders = list((env / "mmrec").iterdir())
    assert len(folders) == 1 and folders[0].name.startswith("synthetic-80u-200i-")
    inter = folders[0] / "synthetic.inter"
    rows = np.loadtxt(inter, skiprows=1, delimiter="\t")
    report = json.loads((folders[0] / "export.json").read_text())["report"]
    cold = set(rows[:, 1].astype(int)) - set(rows[rows[:, 4] == 0, 1].astype(int))
    assert len(cold) == report["cold_items"] == round(0.1 * report["items"]) > 0
    mask = np.load(folders[0] / "feat_mask.npz")
    assert 0.8 < mask["image"].mean() < 1 and mask["text"].mean() > 0.9  # ~8% / ~2% of products lack one
    info = json.loads((tmp_path / "a" / "run.json").read_text())
    assert info["dataset"] == "synthetic" and info["num_items"] == report["items"]
    assert info["load_report"]["nonfinite_feature_rows"] == {"image": 0, "text": 0}
    made = inter.stat().st_mtime_ns
    run_cli(tmp_path / "b", *small)
    assert inter.stat().st_mtime_ns == made and len(list((env / "mmrec").iterdir())) == 1
    assert json.loads((tmp_path / "b" / "metrics.json").read_text()) == json.loads(
        (tmp_path / "a" / "metrics.json").read_text())


@pytest.mark.parametrize("overrides,message", [
    (["data=mmrec_synthetic"], "add task=recommend"),
    (["task=recommend", "data=mmrec_synthetic", "data.draws_per_user=0"], "data.draws_per_user must be at least 1"),
    (["task=recommend", "data=mmrec_synthetic", "+data.path=x.inter"],
     "data: interaction source 'mmrec_synthetic' takes no option 'path'"),
])
def test_mmrec_synthetic_config_errors_are_one_line(env, tmp_path, capsys, overrides, message):
    assert main(["run", f"hydra.run.dir={tmp_path / 'run'}", *overrides]) == 2
    out, err = capsys.readouterr()
    assert message in err and err.count("\n") == 1 and "Traceback" not in out + err

"""Amazon Reviews loaders (2014 / 2018 / 2023) on hand-written fixtures, the catalog-source hook and the real Gift Cards."""
from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

import pytest
from omegaconf import OmegaConf
from PIL import Image

from gnn_mmsearch.cli import main
from gnn_mmsearch.data import cached_catalog, load_catalog
from gnn_mmsearch.data.amazon import IMAGE_URLS, AmazonConfig, k_core, load_amazon
from gnn_mmsearch.data.amazon_formats import category_path, clean_text, parse_price

from conftest import run_cli

FIXTURES = Path(__file__).parent / "fixtures" / "amazon"
FILES = {"2014": ("meta_Toys_2014.json", "reviews_Toys_5_2014.json"),
         "2018": ("meta_Toys_2018.json", "Toys_5_2018.json"),
         "2023": ("meta_Toys_2023.jsonl", "Toys_2023.jsonl")}
# links kept / dangling per type with k_core=2 (B005 falls out of the core, so links to it dangle)
def _counts(also_buy: int, also_view: int, bought_together: int) -> dict[str, int]:
    return {"also_buy": also_buy, "also_view": also_view, "bought_together": bought_together}


LINKS = {"2014": (_counts(2, 1, 1), _counts(1, 1, 0)), "2018": (_counts(3, 1, 0), _counts(1, 1, 0)),
         "2023": (_counts(0, 0, 3), _counts(0, 0, 2))}
SHARED = next((p for p in (Path("/work/shared/data"), Path(__file__).resolve().parents[2] / "shared" / "data")
               if (p / "amazon2018-gift-cards" / "meta_Gift_Cards.json").exists()), None)


def _inputs(tmp_path: Path, fmt: str, gz: bool) -> tuple[Path, Path, Path]:
    """The fixture files of ``fmt`` (gzipped when ``gz``) and an images folder holding only B001.jpg."""
    paths = []
    for name in FILES[fmt]:
        src, dst = FIXTURES / name, tmp_path / (name + ".gz" if gz else name)
        if gz:
            with open(src, "rb") as f, gzip.open(dst, "wb") as g:
                shutil.copyfileobj(f, g)
        else:
            shutil.copy(src, dst)
        paths.append(dst)
    images = tmp_path / "images"
    images.mkdir()
    Image.new("RGB", (8, 8), "red").save(images / "B001.jpg")
    return paths[0], paths[1], images


@pytest.mark.parametrize("gz", [False, True], ids=["plain", "gz"])
@pytest.mark.parametrize("fmt", ["2014", "2018", "2023"])
def test_load_with_reviews_and_k_core(tmp_path, fmt, gz):
    meta, reviews, images = _inputs(tmp_path, fmt, gz)
    catalog = load_amazon(AmazonConfig(fmt, str(meta), str(reviews), str(images), k_core=2))
    report = catalog.meta["load_report"]

    assert catalog.ids == ["B001", "B002", "B003", "B004"]  # B005 (one review) is outside the 2-core
    kite, train, blocks, puzzle = catalog.products
    assert kite.title == "Red & Blue Kite" and kite.description == 'A kite with a "long" tail.'
    assert kite.brand == "SkyCo" and kite.price == 12.99
    assert kite.rating == 4.0 and kite.popularity == 2  # the duplicate review (U1, B001) is not counted
    assert kite.image_path == str((images / "B001.jpg").resolve()) and train.image_path is None
    assert train.title == "Wooden Train"  # the first line wins over the duplicate
    assert blocks.title is None and blocks.description == "A box of coloured blocks, no title."
    assert blocks.text() is not None and puzzle.price == (None if fmt == "2018" else 7.5)
    assert catalog.meta["image_urls"]["B001"] == "http://example.com/B001.jpg"

    kept, dangling = LINKS[fmt]
    assert report["links"] == kept and report["dangling_links"] == dangling
    assert len(catalog.edges) == sum(kept.values())
    assert {(i.user, i.item) for i in catalog.interactions} == {
        ("U1", "B001"), ("U1", "B002"), ("U1", "B003"), ("U2", "B001"), ("U2", "B002"), ("U2", "B004"),
        ("U3", "B003"), ("U3", "B004")}
    first = catalog.interactions[0]
    assert (first.user, first.item, first.timestamp, first.rating) == ("U1", "B001", 1393545600.0, 5.0)
    assert {k: report[k] for k in ("meta_lines", "malformed_meta", "duplicate_products", "no_title", "products")} == {
        "meta_lines": 7, "malformed_meta": 1, "duplicate_products": 1, "no_title": 1, "products": 4}
    assert {k: report[k] for k in ("review_lines", "malformed_reviews", "duplicate_reviews", "reviews_unknown_item",
                                   "kcore_dropped_products", "kcore_dropped_users", "kcore_dropped_interactions",
                                   "interactions", "images_found", "images_missing")} == {
        "review_lines": 12, "malformed_reviews": 1, "duplicate_reviews": 1, "reviews_unknown_item": 1,
        "kcore_dropped_products": 1, "kcore_dropped_users": 1, "kcore_dropped_interactions": 1,
        "interactions": 8, "images_found": 1, "images_missing": 3}


def test_2018_prices_and_categories(tmp_path):
    meta, _, _ = _inputs(tmp_path, "2018", gz=False)
    catalog = load_amazon(AmazonConfig("2018", str(meta), k_core=5))
    kite, train, blocks, puzzle, yoyo = catalog.products
    assert (kite.price, train.price, blocks.price, puzzle.price) == (12.99, 5.0, None, None)
    assert catalog.meta["load_report"]["unparsed_price"] == 1  # the HTML debris in B004's price
    assert kite.category == ["Toys & Games", "Kites"]


@pytest.mark.parametrize("fmt", ["2014", "2018", "2023"])
def test_metadata_only_keeps_every_product(tmp_path, fmt, caplog):
    meta, _, _ = _inputs(tmp_path, fmt, gz=False)
    with caplog.at_level("INFO", logger="gnn_mmsearch.data.amazon"):
        catalog = load_amazon(AmazonConfig(fmt, str(meta), k_core=5))
    assert "k-core skipped" in caplog.text and "malformed metadata line" in caplog.text
    assert catalog.ids == ["B001", "B002", "B003", "B004", "B005"] and not catalog.interactions
    report = catalog.meta["load_report"]
    assert report["kcore_dropped_products"] == 0 and report["images_found"] == 0 and report["images_missing"] == 5
    assert sum(report["dangling_links"].values()) == 1  # only B999 dangles when B005 stays
    if fmt == "2023":  # the metadata's own rating when there are no reviews
        assert (catalog.products[0].rating, catalog.products[0].popularity) == (4.5, 10)


def test_k_core_zero_keeps_all_reviewed_pairs(tmp_path):
    meta, reviews, _ = _inputs(tmp_path, "2023", gz=False)
    catalog = load_amazon(AmazonConfig("2023", str(meta), str(reviews), k_core=0))
    assert len(catalog) == 5 and len(catalog.interactions) == 9
    assert catalog.products[4].rating == 1.0  # reviews override the metadata's average rating


def test_k_core_is_iterative():
    pairs = {("a", "x"), ("a", "y"), ("b", "x"), ("b", "y"), ("c", "y"), ("c", "z")}
    # z has one pair -> c drops to one pair -> c goes, then y still has two pairs
    assert k_core(pairs, 2) == {("a", "x"), ("a", "y"), ("b", "x"), ("b", "y")}
    assert k_core(pairs, 3) == set()


def test_cleaning_helpers():
    assert clean_text(["Fish &amp; <i>Chips</i>", None, "  now\t"]) == "Fish & Chips now"
    assert clean_text("   ") is None
    assert parse_price("$1,299.00") == (1299.0, False) and parse_price("$5 - $10") == (5.0, False)
    assert parse_price("") == (None, False) and parse_price("call us") == (None, True)
    assert parse_price(3) == (3.0, False)
    assert category_path(["A", "A", "</span>", "No fees.", "B"]) == ["A", "B"]


def test_bad_config():
    with pytest.raises(ValueError, match="unknown Amazon format"):
        AmazonConfig("2020", "meta.json")


def test_amazon_source_builds_and_caches(tmp_path):
    meta, reviews, images = _inputs(tmp_path, "2018", gz=True)
    data_cfg = OmegaConf.create({"source": "amazon", "format": 2018, "meta_path": str(meta),
                                 "reviews_path": str(reviews), "images_dir": str(images), "k_core": 2})
    catalog = load_catalog(data_cfg, tmp_path / "cache" / "catalogs")
    (root,) = (tmp_path / "cache" / "catalogs").iterdir()
    assert root.name.startswith("amazon-") and catalog.root == root
    assert catalog.meta["load_report"]["products"] == 4 and "image_urls" not in catalog.meta
    assert (root / IMAGE_URLS).read_text().splitlines()[1] == "B001\thttp://example.com/B001.jpg"
    assert catalog.image_file(catalog.products[0]).exists()
    again = cached_catalog(AmazonConfig("2018", str(meta), str(reviews), str(images), 2), root.parent)
    assert again.fingerprint() == catalog.fingerprint()
    assert len(list(root.parent.iterdir())) == 1  # read from the cache, not built again
    assert AmazonConfig("2018", str(meta), str(reviews), str(images), 0).cache_key() != root.name
    meta.write_bytes(meta.read_bytes() + b"\n")  # the file changed: a new key
    assert AmazonConfig("2018", str(meta), str(reviews), str(images), 2).cache_key() != root.name


@pytest.mark.shared_data
@pytest.mark.skipif(SHARED is None, reason="the shared data (/work/shared/data or ../shared/data) is not here")
def test_real_gift_cards():
    root = SHARED / "amazon2018-gift-cards"
    catalog = load_amazon(AmazonConfig("2018", str(root / "meta_Gift_Cards.json"), images_dir=str(root / "images"),
                                       k_core=0))
    report = catalog.meta["load_report"]
    assert len(catalog) == report["products"] == 1547
    assert report["images_found"] == 442 and report["images_missing"] == 1105
    assert report["links"]["also_buy"] == 5286 and report["dangling_links"]["also_buy"] > 0
    assert report["malformed_meta"] == 0 and not catalog.interactions
    assert all(p.text() is not None for p in catalog.products)


@pytest.mark.slow
@pytest.mark.shared_data
@pytest.mark.skipif(SHARED is None, reason="the shared data (/work/shared/data or ../shared/data) is not here")
def test_gift_cards_run(env, tmp_path, monkeypatch):
    """``gnn-mmsearch run data=gift_cards``: products without a local image are image-masked, none text-masked."""
    monkeypatch.setenv("GNN_MMSEARCH_SHARED", str(SHARED))
    run_cli(tmp_path / "run", "data=gift_cards", "train.max_epochs=3", "logger=none")
    info = json.loads((tmp_path / "run" / "run.json").read_text())
    assert info["num_products"] == 1547
    assert info["features"]["image_missing"] == 1105 and info["features"]["text_missing"] == 0
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["copurchase/recall@10"] > 0


# ------------------------------------------------------------------------------- bad input in the files
def _meta_lines(path: Path, lines: list[bytes]) -> Path:
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


def test_malformed_lines_are_counted_and_named(tmp_path, caplog):
    """Invalid UTF-8, an integer ASIN and a Python call in a 2014 literal are malformed lines, each counted and logged
    with what is wrong (never an object's repr)."""
    good = b"{'asin': 'B001', 'title': 'Kite', 'imUrl': 'http://example.com/B001.jpg'}"
    meta = _meta_lines(tmp_path / "meta.json", [
        good, "{'asin': 'B002', 'title': 'caf\u00e9'}".encode("latin-1"), b"{'asin': 123, 'title': 'Number'}",
        b"{'asin': 'B004', 'title': 'Call', 'salesRank': dict(a=1)}"])
    with caplog.at_level("WARNING", logger="gnn_mmsearch.data.amazon"):
        catalog = load_amazon(AmazonConfig("2014", str(meta), k_core=0))
    assert catalog.ids == ["B001"] and catalog.meta["load_report"]["malformed_meta"] == 3
    assert "meta.json:2 malformed metadata line skipped: not UTF-8 text" in caplog.text
    assert "meta.json:3 malformed metadata line skipped: 'asin' must be a string, got int 123" in caplog.text
    assert "meta.json:4 malformed metadata line skipped: not a Python literal" in caplog.text
    assert "Call expression" in caplog.text and "object at 0x" not in caplog.text


def test_prices_that_are_not_prices_are_unparsed(tmp_path):
    meta = _meta_lines(tmp_path / "meta.json", [
        b'{"asin": "A", "title": "a", "price": NaN}', b'{"asin": "B", "title": "b", "price": Infinity}',
        b'{"asin": "C", "title": "c", "price": -4.5}', b'{"asin": "D", "title": "d", "price": 4.5}',
        b'{"asin": "E", "title": "e", "price": "NaN"}'])
    catalog = load_amazon(AmazonConfig("2018", str(meta), k_core=0))
    assert [p.price for p in catalog.products] == [None, None, None, 4.5, None]
    assert catalog.meta["load_report"]["unparsed_price"] == 4
    assert parse_price(float("nan")) == parse_price(-1) == parse_price(float("-inf")) == (None, True)


def test_image_counts_agree_with_the_feature_extractor(tmp_path):
    """A file that does not decode (empty, garbage, a JPEG cut in half) is no image: the load report and the
    features count it the same way (missing), and the report says how many such files there were."""
    images = tmp_path / "images"
    images.mkdir()
    Image.new("RGB", (64, 64), "red").save(images / "A1.jpg")
    Image.new("RGB", (64, 64), "blue").save(images / "A2.jpg")
    whole = (images / "A2.jpg").read_bytes()
    (images / "A2.jpg").write_bytes(whole[: len(whole) // 2])
    (images / "A3.jpg").write_bytes(b"")
    (images / "A4.jpg").write_bytes(b"not a jpeg at all" * 10)
    meta = _meta_lines(tmp_path / "meta.json", [json.dumps({"asin": f"A{i}", "title": f"t{i}"}).encode()
                                                 for i in range(1, 6)])
    catalog = load_amazon(AmazonConfig("2018", str(meta), images_dir=str(images), k_core=0))
    report = catalog.meta["load_report"]
    assert (report["images_found"], report["images_missing"], report["images_unreadable"]) == (1, 4, 3)
    assert [p.image_path is not None for p in catalog.products] == [True, False, False, False, False]


def test_products_with_nothing_to_search_them_by_are_dropped(tmp_path, caplog):
    """No title, description, image or link: every such product would get the same vector, so it is dropped (with
    its interactions) and counted; one with only a link or only an image stays."""
    images = tmp_path / "images"
    images.mkdir()
    Image.new("RGB", (16, 16), "red").save(images / "IMG.jpg")
    meta = _meta_lines(tmp_path / "meta.json", [json.dumps(d).encode() for d in (
        {"asin": "T1", "title": "kite", "also_buy": ["LINKED"]}, {"asin": "LINKED"}, {"asin": "IMG"},
        {"asin": "BLANK1", "brand": "Acme", "imageURLHighRes": ["http://example.com/BLANK1.jpg"]},
        {"asin": "BLANK2", "price": "$3.00"})])
    reviews = _meta_lines(tmp_path / "reviews.json", [json.dumps(
        {"reviewerID": u, "asin": a, "overall": 5.0, "unixReviewTime": 1}).encode() for u in ("U1", "U2")
        for a in ("T1", "BLANK2")])
    with caplog.at_level("WARNING", logger="gnn_mmsearch.data.amazon"):
        catalog = load_amazon(AmazonConfig("2018", str(meta), str(reviews), str(images), k_core=0))
    assert catalog.ids == ["T1", "LINKED", "IMG"]
    report = catalog.meta["load_report"]
    assert report["dropped_no_content"] == 2 and report["dropped_no_content_interactions"] == 2
    assert report["products"] == 3 and report["interactions"] == 2
    assert "dropped 2 products with no title, description, image or link" in caplog.text
    assert "BLANK1" in catalog.meta["image_urls"]  # a download can still bring it back


def test_wrong_format_and_an_empty_k_core_are_one_line(tmp_path):
    meta, reviews, _ = _inputs(tmp_path, "2014", gz=False)
    with pytest.raises(ValueError, match=r"meta_Toys_2014.json does not read as format 2023 metadata; it looks like "
                                         r"format 2014 \(data.format=2014\)"):
        load_amazon(AmazonConfig("2023", str(meta), k_core=0))
    with pytest.raises(ValueError, match="the 50-core of the reviews leaves no product"):
        load_amazon(AmazonConfig("2014", str(meta), str(reviews), k_core=50))


def test_a_catalog_too_small_to_split_is_one_line(env, tmp_path, capsys):
    """3 products and 3 links: no validation or test link can be held out; `run` says so before loading any model."""
    meta = _meta_lines(tmp_path / "meta.json", [json.dumps({"asin": a, "title": f"kite {a}", "also_buy": links})
                                                 .encode() for a, links in (("A1", ["A2", "A3"]), ("A2", ["A3"]),
                                                                            ("A3", ["A1"]))])
    run_dir = tmp_path / "run"
    assert main(["run", f"hydra.run.dir={run_dir}", "logger=none", "data=amazon", f"data.meta_path={meta}"]) == 2
    out, err = capsys.readouterr()
    assert err.strip() == ("gnn-mmsearch run: data: catalog 'meta' is too small to split: its 3 also_buy link(s) give "
                           "3 training, 0 validation, 0 test (at least 1 of each is needed)")
    assert "Traceback" not in out + err and "features" not in out and not run_dir.exists()
    assert main(["run", f"hydra.run.dir={run_dir}", "logger=none", "data=amazon", f"data.meta_path={meta}",
                 "data.format=2023"]) == 2
    assert capsys.readouterr().err.strip() == (f"gnn-mmsearch run: data: {meta} does not read as format 2023 "
                                               "metadata; it looks like format 2018 (data.format=2018)")

"""Searcher queries on the small real run (conftest.py): user history, batches, text + image, empty results, and the
diversity metrics the run reports."""
from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from gnn_mmsearch.cli import main
from gnn_mmsearch.data import split_products
from gnn_mmsearch.evaluation import served_query_metrics, title_queries
from gnn_mmsearch.ranking import RankingPipeline
from gnn_mmsearch.retrievers import QueryBatch
from gnn_mmsearch.search import Searcher

TEXTS = ["wireless mouse", "red leather wallet", "espresso machine"]


@pytest.fixture(scope="module")
def searcher(run_dir) -> Searcher:
    return Searcher.from_run(run_dir)


def test_run_saves_the_image_expansion_the_served_bm25_indexes(run_dir, searcher):
    saved = json.loads((run_dir / "expansion.json").read_text())
    assert saved["top_k"] == 10 and saved["words"]  # relevance.expansion defaults: words were added
    assert all(0 < len(words) <= saved["top_k"] for words in saved["words"].values())
    weights = json.loads((run_dir / "run.json").read_text())["fusion_weights"]
    bm25 = searcher.hybrid.bm25
    assert bm25.expansion_weight == weights["expansion"] and bm25.title_weight == weights["title"]
    assert (bm25.title is not None) == bool(weights["title"])
    assert bm25.expansions == [saved["words"].get(pid, []) for pid in searcher.catalog.ids]
    textless = [pid for pid, p in zip(searcher.catalog.ids, searcher.catalog.products)
                if not (p.title or p.description or p.brand) and pid in saved["words"]]
    for pid in textless:  # reachable by BM25 through its image words alone (when their weight is on)
        row = searcher.catalog.index_of[pid]
        score = bm25.scores(QueryBatch([" ".join(saved["words"][pid])]))[0, row]
        assert np.isfinite(score) == bool(weights["expansion"])


def test_an_unreadable_expansion_file_is_one_line(run_dir, tmp_path, capsys):
    import shutil

    broken = tmp_path / "run"
    shutil.copytree(run_dir, broken)
    (broken / "expansion.json").write_text("{oops")
    rc, out, err = cli(capsys, broken, "red wallet")
    assert rc == 2 and f"{broken / 'expansion.json'}: unreadable (JSONDecodeError" in err
    assert "Traceback" not in out + err


def exact_top(searcher: Searcher, query: np.ndarray, k: int, exclude=()) -> list[str]:
    """Brute-force top-``k`` ids over every stored vector, ``exclude`` left out."""
    ids = [i for i in searcher.catalog.ids if i not in set(exclude)]
    scores = searcher.index.vectors(ids) @ (query / np.linalg.norm(query))
    return [ids[j] for j in np.argsort(-scores, kind="stable")[:k]]


def cli(capsys, run_dir: Path, *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    rc = main(["search", *args, "--run", str(run_dir)])
    out, err = capsys.readouterr()
    return rc, out, err


# ------------------------------------------------------------------------------------------------ history
def test_history_is_the_mean_of_its_items_and_excluded(searcher):
    history = searcher.catalog.ids[10:13]
    hits = searcher.search(history=history, k=8)
    ids = [h.id for h in hits]
    assert len(ids) == 8 and not set(ids) & set(history)
    assert ids == exact_top(searcher, searcher.index.vectors(history).mean(0), 8, exclude=history)


def test_history_decay_weighs_recent_items_more(searcher):
    history = searcher.catalog.ids[20:23]  # oldest first
    vecs = searcher.index.vectors(history)
    vector, known = searcher.user_vector(history, decay=0.5)
    assert known == history
    expected = np.array([0.25, 0.5, 1.0]) @ vecs / 1.75
    np.testing.assert_allclose(vector[0], expected / np.linalg.norm(expected), atol=1e-6)
    np.testing.assert_allclose(searcher.user_vector(history, decay=1.0)[0], searcher.user_vector(history)[0], atol=1e-6)
    # a steep decay leaves the most recent item: its neighbours, none of the history
    recent = [h.id for h in searcher.search(history=history, decay=1e-6, k=5)]
    assert recent == exact_top(searcher, vecs[-1], 5, exclude=history)
    with pytest.raises(ValueError, match="decay"):
        searcher.user_vector(history, decay=0.0)


def test_history_unknown_ids_are_skipped_with_a_warning(searcher, caplog):
    history = searcher.catalog.ids[30:32]
    with caplog.at_level(logging.WARNING, logger="gnn_mmsearch.search"):
        mixed = searcher.search(history=["NO-SUCH-1", history[0], "NO-SUCH-2", history[1]], k=5)
    assert "NO-SUCH-1, NO-SUCH-2" in caplog.text
    assert [h.id for h in mixed] == [h.id for h in searcher.search(history=history, k=5)]
    with pytest.raises(KeyError, match="no known product id in the history"):
        searcher.search(history=["NO-SUCH-1", "NO-SUCH-2"])
    with pytest.raises(KeyError, match="empty history"):
        searcher.search(history=[])


def test_history_on_the_command_line(run_dir, searcher, capsys, caplog):
    history = searcher.catalog.ids[40:42]
    with caplog.at_level(logging.WARNING, logger="gnn_mmsearch.search"):
        rc, out, err = cli(capsys, run_dir, "--history", f"{history[0]}, {history[1]},NO-SUCH", "-k", "4")
    assert rc == 0, err
    assert "unknown product id(s): NO-SUCH" in caplog.text
    ids = [line.split()[2] for line in out.splitlines()[1:]]
    assert ids == [h.id for h in searcher.search(history=history, k=4)]
    rc, out, err = cli(capsys, run_dir, "--history", "NO-SUCH,NOR-THIS")
    assert rc == 2 and out == ""
    assert err.strip() == "gnn-mmsearch search: no known product id in the history ['NO-SUCH', 'NOR-THIS']"


# ------------------------------------------------------------------------------------------------ batches
def test_batch_equals_single_queries_in_one_pass(searcher, monkeypatch):
    calls = {"encode": 0, "search": 0}
    index = searcher.hybrid.index if searcher.hybrid is not None else searcher.index  # where text queries go
    encode, search = searcher.encoder.query_features, index.search  # one extractor pass per batch

    def count(name, fn):
        def wrapped(*args, **kwargs):
            calls[name] += 1
            return fn(*args, **kwargs)
        return wrapped

    monkeypatch.setattr(searcher.encoder, "query_features", count("encode", encode))
    monkeypatch.setattr(index, "search", count("search", search))
    for mmr_lambda in (None, 0.5):
        calls.update(encode=0, search=0)
        batch = searcher.search_batch(TEXTS, k=6, mmr_lambda=mmr_lambda)
        assert calls == {"encode": 1, "search": 1}
        singles = [searcher.search(text=t, k=6, mmr_lambda=mmr_lambda) for t in TEXTS]
        assert [[h.id for h in hits] for hits in batch] == [[h.id for h in hits] for hits in singles]
        np.testing.assert_allclose([[h.score for h in hits] for hits in batch],
                                   [[h.score for h in hits] for hits in singles], atol=1e-5)
    assert searcher.search_batch([]) == []


def test_batch_on_the_command_line(run_dir, searcher, tmp_path, capsys):
    queries = tmp_path / "queries.txt"
    queries.write_text("wireless mouse\n\n  espresso machine  \n")
    rc, out, err = cli(capsys, run_dir, "--batch", str(queries), "-k", "3")
    assert rc == 0, err
    blocks = out.split("\n\n")[1:]
    assert [b.splitlines()[0] for b in blocks] == ['search "wireless mouse":', 'search "espresso machine":']
    for block, text in zip(blocks, ["wireless mouse", "espresso machine"]):
        assert [line.split()[2] for line in block.splitlines()[1:]] == [h.id for h in searcher.search(text=text, k=3)]
    (tmp_path / "blank.txt").write_text("\n  \n")
    for path, message in ((tmp_path / "blank.txt", "has no queries"), (tmp_path / "missing.txt", "cannot read")):
        rc, out, err = cli(capsys, run_dir, "--batch", str(path))
        assert rc == 2 and out == "" and message in err


# ------------------------------------------------------------------------------------------ text + image
def test_text_and_image_together_is_one_combined_query(searcher):
    product = next(p for p in searcher.catalog.products if p.image_path)
    image = searcher.catalog.image_file(product)
    raw = searcher.encoder.query_features(text="coffee mug", image=image)
    head = searcher.hybrid.head
    combined = head.embed_query_features(**raw)[0]
    parts = head.embed_query_features(text=raw["text"])[0] + head.embed_query_features(image=raw["image"])[0]
    torch.testing.assert_close(combined, parts / parts.norm())  # one query: the normalised sum of both towers
    both = [h.id for h in searcher.search(text="coffee mug", image=image, k=8)]
    assert both == searcher.hybrid.search(raw, ["coffee mug"], 8).ids[0][:8]
    assert both != [h.id for h in searcher.search(text="coffee mug", k=8)]


def test_one_kind_of_query_at_a_time(searcher, run_dir, capsys):
    pid = searcher.catalog.ids[0]
    with pytest.raises(ValueError, match="exactly one"):
        searcher.search(text="mug", history=[pid])
    with pytest.raises(ValueError, match="exactly one"):
        searcher.search()
    rc, _, err = cli(capsys, run_dir, "--history", pid, "--product", pid)
    assert rc == 2 and "a product id cannot be combined with a history" in err
    rc, _, err = cli(capsys, run_dir, "mug", "--decay", "0.5")
    assert rc == 2 and "decay needs a history" in err


# --------------------------------------------------------------------------------------------- no results
def test_empty_result_set_says_no_results(run_dir, capsys):
    rc, out, err = cli(capsys, run_dir, "mug", "--filter", "category=No Such Category")
    assert rc == 0, err
    assert out.splitlines()[1:] == ["  no results: no product left after --filter 'category=No Such Category': "
                                    "no category 'No Such Category'"]
    rc, out, _ = cli(capsys, run_dir, "mug", "--filter", "price<=0.001")
    assert rc == 0 and out.splitlines()[-1].strip().startswith("no results")
    with pytest.raises(SystemExit) as exit_info:
        main(["search", "--help"])
    assert exit_info.value.code == 0
    assert "prints 'no results' and exits 0" in " ".join(capsys.readouterr().out.split())


def test_category_filters_ignore_case_and_hint_at_a_near_name(run_dir, capsys):
    rc, exact, _ = cli(capsys, run_dir, "wallet", "--filter", "category=Wallets", "-k", "3")
    rc_lower, lower, err = cli(capsys, run_dir, "wallet", "--filter", "category=wALLETS", "-k", "3")
    assert rc == rc_lower == 0 and lower == exact and len(lower.splitlines()) == 4, err
    rc, out, err = cli(capsys, run_dir, "wallet", "--filter", "category=Walets")
    assert rc == 0 and "Traceback" not in err
    assert out.splitlines()[1:] == ["  no results: no product left after --filter 'category=Walets': no category "
                                    "'Walets' (did you mean 'Wallets'?)"]


def test_k_above_the_catalog_and_a_truncated_query_are_warned(run_dir, searcher, capsys, caplog):
    n = len(searcher.hybrid.index)
    with caplog.at_level(logging.WARNING):
        rc, out, err = cli(capsys, run_dir, "wallet", "-k", "5000")
    assert rc == 0 and len(out.splitlines()) == 1 + n and "Traceback" not in err
    assert caplog.messages == [f"k=5000 is more than the {n} products this query can reach: k capped to {n}"]
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        rc, out, err = cli(capsys, run_dir, " ".join(["red leather wallet"] * 120), "-k", "2")
    assert rc == 0 and len(out.splitlines()) == 3
    (message,) = caplog.messages  # one line, the tokenizer's own warning silenced
    assert message.startswith("query truncated to the text encoder's 256 tokens (it has 362): red leather wallet")
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        assert cli(capsys, run_dir, "red leather wallet", "-k", "2")[0] == 0
    assert caplog.messages == []


# ----------------------------------------------------------------------------------------------- diversity
@pytest.fixture(scope="module")
def title_query_set(run_dir, searcher) -> tuple:
    """The run's held-out title queries (as the job builds them): graph vectors, rank queries, target ids, raw
    features and texts."""
    cfg = OmegaConf.load(run_dir / "config.yaml")
    catalog = searcher.catalog
    holdout = split_products(len(catalog), cfg.split.query_holdout_ratio, cfg.seed)
    queries, targets = title_queries(catalog.products, holdout.nonzero().flatten().tolist(), cfg.seed)
    features = searcher.encoder.query_features(text=queries)
    vectors = searcher.encoder.embed_queries(features).detach().numpy()
    return (vectors, [searcher.pipeline.query(v, searcher.index.vectors) for v in vectors],
            [catalog.ids[t] for t in targets], features, queries)


def test_run_reports_diversity_of_the_served_lists(run_dir, searcher, title_query_set):
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert 0.0 < metrics["diversity/ild@10"] <= 2.0
    assert 0.1 <= metrics["diversity/coverage@10"] <= 1.0  # distinct leaf categories in the top 10, / 10
    assert not any(k.startswith(("diversity_mmr/", "text_query_mmr/")) for k in metrics)  # ranking=none
    # the same figures recomputed from the saved run, through the served path (hybrid relevance retrieval)
    assert searcher.hybrid is not None
    again = served_query_metrics(searcher, *title_query_set[:3], 10, *title_query_set[3:])
    assert again == pytest.approx({k: metrics[k] for k in again}, abs=1e-4)


def test_mmr_metrics_when_mmr_is_configured(searcher, title_query_set):
    diversified = Searcher(searcher.encoder, searcher.index, searcher.catalog,
                           RankingPipeline(searcher.pipeline.table, mmr_lambda=0.3, candidates=100))
    metrics = served_query_metrics(diversified, *title_query_set[:3], 10)
    assert set(metrics) == {"diversity/ild@10", "diversity/coverage@10", "text_query_mmr/recall@10",
                            "text_query_mmr/ndcg@10", "diversity_mmr/ild@10", "diversity_mmr/coverage@10"}
    assert metrics["diversity_mmr/ild@10"] > metrics["diversity/ild@10"]
    assert metrics["diversity_mmr/coverage@10"] > metrics["diversity/coverage@10"]
    assert 0.0 <= metrics["text_query_mmr/ndcg@10"] <= metrics["text_query_mmr/recall@10"] <= 1.0
    # the metrics score exactly the lists `search` serves
    served = [h.id for h in diversified.search_batch(["wireless mouse"], k=10)[0]]
    vector = diversified.encoder.encode_query(text="wireless mouse").numpy()
    listed = diversified.serve(vector, [diversified.pipeline.query(vector[0], diversified.index.vectors)], 10)[0].ids
    assert served == listed

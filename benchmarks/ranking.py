"""Ranking stages on user queries: retrieval alone vs + rules vs + LambdaMART vs + RankSVM vs + personalization.

User queries (``gnn_mmsearch/training/_user_queries.py``): each user's last 3 interactions are held out; the query is the
title-derived query (brand and some words dropped) of the newest held-out item the user had not bought before, the
relevant items are all such held-out items, the history is everything earlier. Candidates: the index's top 200 for
the query (history excluded). Users are split 70/30 into train and test users per seed (the learned rankers see
only train users; a leakage guard checks it). "cold" rows rank without the user (no history features); "+ user"
rows add the user vector (attention over the history) and the history's co-purchase links as features, and
"personalize" re-scores with ``minmax(score) + 0.5 * cos(user, item)``. The last rows add MMR (lambda 0.7).
Raw text/image features are the run's saved ones (``<run>/ranking_features``), query texts the run's (drawn with
the seed), so "served ranker" rows -- the ranker the run trained and serves, on the run's own test users -- are
what ``gnn-mmsearch search`` answers with (runs trained with ``ranking=lambdamart`` and the same seed). Every row
scores the lists ``Searcher.serve`` returns with that row's pipeline.
Also times ranking 200 candidates for one query (features + LightGBM + MMR) on one thread.

    python benchmarks/ranking.py --run runs/s0 runs/s1 runs/s2 --seeds 0 1 2   # ranking=lambdamart seed=0, 1, 2
"""
from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from gnn_mmsearch.evaluation import list_metrics
from gnn_mmsearch.ranking import FEATURES, ItemTable, Personalizer, RankingPipeline
from gnn_mmsearch.ranking.ltr import LambdaMART, RankSVM
from gnn_mmsearch.ranking.modal import load_modal, split_query_features
from gnn_mmsearch.ranking.rules import RuleScorer
from gnn_mmsearch.run_dir import RunDir
from gnn_mmsearch.search import Searcher
from gnn_mmsearch.training._user_queries import assert_no_leakage, split_users, training_examples
from gnn_mmsearch.training.ranker import user_query_texts

DEPTH, K, MMR_LAMBDA = 200, 10, 0.7


def load(run_dir: Path, seed: int):
    """Searcher, item table (the run's saved raw text/image features), the user queries with texts drawn with
    ``seed`` (as the run draws them), their vectors and raw query features."""
    searcher = Searcher.from_run(run_dir)
    enc, catalog = searcher.encoder.eval(), searcher.catalog
    run = RunDir(run_dir)
    table = ItemTable.from_catalog(catalog, enc.config.graph_edge_types,
                                   load_modal(run / run.RANKING_FEATURES, len(catalog)))
    if not table.modal:
        raise SystemExit(f"{run_dir} keeps no raw features for ranking: train it with ranking=lambdamart")
    queries, texts = map(list, zip(*user_query_texts(catalog, seed)))
    features = enc.query_features(text=texts)
    return (searcher, table, queries, enc.embed_queries(features).detach().numpy(),
            split_query_features(features, table.modal))


def served_ranker(run_dir: Path, searcher, seed: int):
    """The run's own learned ranker when its test users are this seed's (same seed and split), else ``None``."""
    cfg = RunDir(run_dir).config()
    same_split = cfg.seed == seed and float(cfg.ranking.test_users) == 0.3
    learned = isinstance(searcher.pipeline.scorer, (LambdaMART, RankSVM))
    return searcher.pipeline.scorer if same_split and learned else None


def one_seed(searcher, table, queries, vectors, raw, seed: int, timing: bool, served=None) -> tuple[dict, dict]:
    index, catalog = searcher.index, searcher.catalog
    fused_only = replace(table, modal={})  # ablation: no raw per-modality text/image features
    train, test = split_users(queries, 0.3, seed)
    assert_no_leakage(train, test)
    pos = {q.user: i for i, q in enumerate(queries)}
    categories = {p.id: p.category for p in catalog.products}
    targets = [q.targets for q in test]

    def prepare(qs, pers):
        rows = [pos[q.user] for q in qs]
        found = index.search(vectors[rows], DEPTH, exclude=[q.history for q in qs])
        builder = RankingPipeline(table, users=pers)
        return list(zip(found.ids, found.scores)), [
            builder.query(vectors[r], index.vectors, q.history if pers else (), pers is not None, raw[r])
            for q, r in zip(qs, rows)]

    test_vectors = vectors[[pos[q.user] for q in test]]

    def score(pipe, rqs):
        """The lists ``Searcher.serve`` returns with ``pipe``."""
        pipe.candidates = DEPTH
        served = Searcher(searcher.encoder, index, catalog, pipe)
        lists = [r.ids for r in served.serve(test_vectors, rqs, K, exclude=[q.history for q in test])]
        return list_metrics(lists, targets, index, categories, K)

    out, info = {}, {"train_queries": len(train), "test_queries": len(test)}
    for pers, suffix in ((None, ""), (Personalizer("attention", weight=0.5), " + user")):
        tr_c, tr_rq = prepare(train, pers)
        te_c, te_rq = prepare(test, pers)
        lm = LambdaMART(seed=seed).fit(*training_examples(table, index, train, tr_c, tr_rq))
        lm_fused = LambdaMART(seed=seed).fit(*training_examples(fused_only, index, train, tr_c, tr_rq))
        svm = RankSVM(seed=seed).fit(*training_examples(table, index, train, tr_c, tr_rq))
        if pers is None:
            out["retrieval"] = score(RankingPipeline(table), te_rq)
            out[f"retrieval + MMR {MMR_LAMBDA}"] = score(RankingPipeline(table, mmr_lambda=MMR_LAMBDA), te_rq)
        else:
            for method in ("mean", "recency", "attention"):
                p = Personalizer(method, weight=0.5)
                rqs = [RankingPipeline(table, users=p).query(vectors[pos[q.user]], index.vectors, q.history, True,
                                                             raw[pos[q.user]]) for q in test]
                out[f"retrieval + personalize ({method})"] = score(RankingPipeline(table, None, p), rqs)
        out["rules" + suffix] = score(RankingPipeline(table, RuleScorer()), te_rq)
        out["LambdaMART" + suffix] = score(RankingPipeline(table, lm), te_rq)
        out["RankSVM" + suffix] = score(RankingPipeline(table, svm), te_rq)
        out[f"LambdaMART{suffix}, fused score only"] = score(RankingPipeline(fused_only, lm_fused), te_rq)
        out[f"LambdaMART{suffix} + MMR {MMR_LAMBDA}"] = score(RankingPipeline(table, lm, mmr_lambda=MMR_LAMBDA), te_rq)
        if served is not None:
            out["served ranker" + suffix] = score(RankingPipeline(table, served), te_rq)
        info[f"gain{suffix or ' cold'}"] = dict(zip(FEATURES, lm.booster.feature_importance("gain").round(1).tolist()))
    if timing:
        info.update(latency(table, index, te_c, te_rq, lm))
    return out, info


def latency(table, index, cands, rqs, ranker, repeats: int = 3) -> dict:
    """p50 / p99 ms of ranking 200 candidates for one query: features + LightGBM + MMR (candidate vectors given)."""
    pipe = RankingPipeline(table, ranker, mmr_lambda=MMR_LAMBDA)
    work = [(ids, s, index.vectors(ids), rq) for (ids, s), rq in zip(cands, rqs) if len(ids) == DEPTH]
    times = []
    for _ in range(repeats):
        for ids, s, v, rq in work:
            t = time.perf_counter()
            pipe.rank(ids, s, v, rq, K)
            times.append((time.perf_counter() - t) * 1e3)
    return {"rank200_ms_p50": float(np.percentile(times, 50)), "rank200_ms_p99": float(np.percentile(times, 99)),
            "rank200_calls": len(times)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, nargs="+", required=True,
                        help="one run for all seeds, or one run per seed (e.g. trained with seed=0, 1, 2)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/ranking_synthetic"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    runs = args.run * len(args.seeds) if len(args.run) == 1 else args.run
    if len(runs) != len(args.seeds):
        parser.error("give one run, or one run per seed")
    per_seed, info = [], []
    for i, (seed, run) in enumerate(zip(args.seeds, runs)):
        loaded = load(run, seed)
        rows, extra = one_seed(*loaded, seed, timing=i == 0, served=served_ranker(run, loaded[0], seed))
        per_seed.append(rows)
        info.append(extra)
        print(f"seed {seed}: " + ", ".join(f"{k}={v['ndcg@10']:.4f}" for k, v in rows.items()), flush=True)
    names = [n for n in per_seed[0] if all(n in rows for rows in per_seed)]
    table = {n: {m: (float(np.mean([r[n][m] for r in per_seed])), float(np.std([r[n][m] for r in per_seed])))
                 for m in per_seed[0][n]} for n in names}
    base = table["retrieval"]["ndcg@10"][0]
    lines = ["| pipeline | NDCG@10 | Recall@10 | ILD@10 | coverage@10 | NDCG vs retrieval |",
             "|---|---|---|---|---|---|"]
    for n, m in table.items():
        cell = lambda key: f"{m[key][0]:.4f} ± {m[key][1]:.4f}"  # noqa: E731
        lines.append(f"| {n} | {cell('ndcg@10')} | {cell('recall@10')} | {cell('ild@10')} | {cell('coverage@10')} "
                     f"| {100 * (m['ndcg@10'][0] / base - 1):+.1f}% |")
    md = "\n".join(lines)
    print(md)
    print(json.dumps(info[0], indent=1))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps({"runs": [str(r) for r in runs], "seeds": args.seeds,
                                                         "table": table, "per_seed": per_seed, "info": info}, indent=1))
    args.out.with_suffix(".md").write_text(md + "\n")


if __name__ == "__main__":
    main()

"""Ranking stages on MMRec-format interactions (``userID itemID x_label``; 0 train, 1 valid, 2 test), no features.

The retriever is a trained top-N run (``gnn-mmsearch run experiment=mmrec_mmgraph_baby``): candidates are the top
200 items for the user's embedding (train items excluded), scored by cosine, which is exactly how ``mmgraph``
ranks. What is meaningful without product content: the graph feature counts co-interactions (items sharing >= 2
train users) with the history; popularity is the train interaction count; the personal feature is the attention
user vector over the history's item embeddings; text/image similarity, price and rating are missing (defaults +
indicators). Rankers train on train users with their *valid* items as relevant and are measured on disjoint test
users with their *test* items (the retriever never saw either as training interactions).

    python benchmarks/ranking_mmrec.py --run runs/mmgraph_baby --users 2000
"""
from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from gnn_mmsearch.data.catalog import Catalog, Product
from gnn_mmsearch.evaluation import list_metrics
from gnn_mmsearch.index import create_index
from gnn_mmsearch.jobs.recommend import load_recommender
from gnn_mmsearch.ranking import ItemTable, Personalizer, RankingPipeline
from gnn_mmsearch.ranking.ltr import LambdaMART, RankSVM
from gnn_mmsearch.ranking.rules import RuleScorer
from gnn_mmsearch.search import Searcher
from gnn_mmsearch.training._user_queries import UserQuery, assert_no_leakage, training_examples

DEPTH, K, MMR_LAMBDA = 200, 10, 0.7


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, required=True, help="a finished top-N run (recommender=mmgraph)")
    parser.add_argument("--users", type=int, default=2000, help="train users and test users drawn (each)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/ranking_mmrec"))
    args = parser.parse_args()
    model, data = load_recommender(args.run)
    with torch.no_grad():
        user_emb, item_emb = (e.numpy() for e in model())
    items = [str(i) for i in range(data.num_items)]

    def item_lists(matrix):
        return {str(u): [items[i] for i in matrix[u].indices] for u in np.flatnonzero(np.diff(matrix.indptr))}

    hist, valid, test = item_lists(data.train), item_lists(data.valid), item_lists(data.test)
    users = sorted(hist, key=int)
    x = data.train
    popularity = np.asarray(x.sum(0)).ravel()
    co = (x.T @ x).tocsr()
    co.setdiag(0)
    co.data = (co.data >= 2).astype(np.float32)
    co.eliminate_zeros()
    catalog = Catalog([Product(i, category=["item"], popularity=float(popularity[j])) for j, i in enumerate(items)])
    table = replace(ItemTable.from_catalog(catalog, []), adjacency=co,
                    degree=np.log1p(np.asarray(co.sum(1)).ravel()).astype(np.float32))
    index = create_index("exact", dim=item_emb.shape[1])
    index.add(item_emb, items)
    pers = Personalizer("attention", weight=0.5)
    per_seed = []
    for seed in args.seeds:
        rng = np.random.default_rng(seed)
        perm = rng.permutation([u for u in users if u in valid and u in test])
        tr_users, te_users = perm[:args.users], perm[args.users:2 * args.users]
        train = [UserQuery(u, hist[u], set(valid[u]) - set(hist[u]), "") for u in tr_users]
        testq = [UserQuery(u, hist[u], set(test[u]) - set(hist[u]), "") for u in te_users]
        train, testq = [q for q in train if q.targets], [q for q in testq if q.targets]
        assert_no_leakage(train, testq)

        builder = RankingPipeline(table, users=pers)

        def prepare(qs):
            qv = user_emb[[int(q.user) for q in qs]]
            res = index.search(qv, DEPTH, exclude=[q.history for q in qs])
            return qv, list(zip(res.ids, res.scores)), [builder.query(v, index.vectors, q.history, True)
                                                        for q, v in zip(qs, qv)]

        _, tr_c, tr_rq = prepare(train)
        te_v, _, te_rq = prepare(testq)
        xs = training_examples(table, index, train, tr_c, tr_rq)
        cats = {i: ["item"] for i in items}
        targets = [q.targets for q in testq]

        def score(pipe):
            """The lists ``Searcher.serve`` returns with ``pipe`` (no encoder: user vectors are the queries)."""
            served = Searcher(None, index, catalog, pipe).serve(te_v, te_rq, K, exclude=[q.history for q in testq])
            return list_metrics([r.ids for r in served], targets, index, cats, K)

        lm = LambdaMART(seed=seed).fit(*xs)
        out = {n: score(RankingPipeline(table, r, candidates=DEPTH)) for n, r in (
            ("retrieval", None), ("rules", RuleScorer()), ("LambdaMART", lm), ("RankSVM", RankSVM(seed=seed).fit(*xs)))}
        out["retrieval + personalize (attention)"] = score(RankingPipeline(table, None, pers, candidates=DEPTH))
        out[f"LambdaMART + MMR {MMR_LAMBDA}"] = score(RankingPipeline(table, lm, mmr_lambda=MMR_LAMBDA,
                                                                      candidates=DEPTH))
        per_seed.append(out)
        print(f"seed {seed}: " + ", ".join(f"{k}={v['ndcg@10']:.4f}" for k, v in out.items()), flush=True)
    names = list(per_seed[0])
    agg = {n: {m: (float(np.mean([r[n][m] for r in per_seed])), float(np.std([r[n][m] for r in per_seed])))
               for m in per_seed[0][n]} for n in names}
    base = agg["retrieval"]["ndcg@10"][0]
    lines = ["| pipeline | NDCG@10 | Recall@10 | ILD@10 | NDCG vs retrieval |", "|---|---|---|---|---|"]
    for n, m in agg.items():
        cells = (f"{m[k][0]:.4f} ± {m[k][1]:.4f}" for k in ("ndcg@10", "recall@10", "ild@10"))
        lines.append(f"| {n} | " + " | ".join(cells)
                     + f" | {100 * (m['ndcg@10'][0] / base - 1):+.1f}% |")
    md = "\n".join(lines)
    print(md)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps({"run": str(args.run), "seeds": args.seeds,
                                                         "users": args.users, "table": agg, "per_seed": per_seed},
                                                        indent=1))
    args.out.with_suffix(".md").write_text(md + "\n")


if __name__ == "__main__":
    main()

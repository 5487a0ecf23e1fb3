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
from gnn_mmsearch.index import create_index
from gnn_mmsearch.ranking import ItemTable, LambdaMART, Personalizer, RankingPipeline, RankSVM, RuleScorer
from gnn_mmsearch.ranking.dataset import UserQuery, assert_no_leakage, rank_query, training_examples
from gnn_mmsearch.ranking.evaluate import evaluate
from gnn_mmsearch.recommend import load_recommender

DEPTH, K, MMR_LAMBDA = 200, 10, 0.7


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, required=True, help="a finished top-N run (model=mmgraph)")
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
    table = replace(ItemTable.from_catalog(catalog), adjacency=co,
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

        def prepare(qs):
            qv = user_emb[[int(q.user) for q in qs]]
            res = index.search(qv, DEPTH, exclude=[q.history for q in qs])
            return list(zip(res.ids, res.scores)), [rank_query(table, index, q, v, None, pers) for q, v in zip(qs, qv)]

        tr_c, tr_rq = prepare(train)
        te_c, te_rq = prepare(testq)
        xs = training_examples(table, index, train, tr_c, tr_rq)
        rankers = {"retrieval": None, "rules": RuleScorer(), "LambdaMART": LambdaMART(seed=seed).fit(*xs),
                   "RankSVM": RankSVM(seed=seed).fit(*xs)}
        cats = {i: ["item"] for i in items}
        targets = [q.targets for q in testq]
        out = {n: evaluate(RankingPipeline(table, r), index, targets, te_c, te_rq, cats, K) for n, r in rankers.items()}
        out["retrieval + personalize (attention)"] = evaluate(RankingPipeline(table, None, pers), index, targets,
                                                              te_c, te_rq, cats, K)
        out[f"LambdaMART + MMR {MMR_LAMBDA}"] = evaluate(RankingPipeline(table, rankers["LambdaMART"],
                                                                         mmr_lambda=MMR_LAMBDA),
                                                         index, targets, te_c, te_rq, cats, K)
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

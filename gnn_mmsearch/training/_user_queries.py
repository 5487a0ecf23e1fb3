"""Labelled user queries for training and evaluating rankers, with a guard against train/test leakage.

Each user's interactions are sorted by time; the last ``holdout`` are held out and the rest are the history.
Targets are held-out items not in the history; the query is the newest target (its title-derived query text).
Users are split into train and test users, so no test (user, item) pair can reach the training data.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..data.catalog import Catalog
from ..index import VectorIndex
from ..ranking import ItemTable, build_features


@dataclass
class UserQuery:
    user: str
    history: list[str]  # oldest first
    targets: set[str]
    query_item: str


def user_queries(catalog: Catalog, holdout: int = 3, min_history: int = 2) -> list[UserQuery]:
    """One query per user with at least ``min_history`` history items and a new item among the last ``holdout``."""
    by_user: dict[str, list] = {}
    for it in catalog.interactions:
        by_user.setdefault(it.user, []).append((it.timestamp, it.item))
    out = []
    for user in sorted(by_user):
        items = [item for _, item in sorted(by_user[user])]
        history, held = items[:-holdout], items[-holdout:]
        new = [i for i in held if i not in set(history)]
        if len(history) >= min_history and new:
            out.append(UserQuery(user, history, set(new), new[-1]))
    return out


def split_users(queries: list[UserQuery], test_ratio: float, seed: int) -> tuple[list[UserQuery], list[UserQuery]]:
    """Train and test queries from disjoint, randomly drawn users."""
    perm = np.random.default_rng(seed).permutation(len(queries))
    n_test = int(round(test_ratio * len(queries)))
    test = set(perm[:n_test].tolist())
    return ([q for i, q in enumerate(queries) if i not in test], [q for i, q in enumerate(queries) if i in test])


def assert_no_leakage(train: list[UserQuery], test: list[UserQuery]) -> None:
    """Raise when a test user appears in the training queries (so a test (user, item) pair could reach training)
    or a test query's target is in its own history (the features would see the answer)."""
    shared = {q.user for q in train} & {q.user for q in test}
    if shared:
        raise AssertionError(f"{len(shared)} user(s) in both train and test, e.g. {sorted(shared)[0]}")
    leaked = [(q.user, t) for q in test for t in q.targets if t in q.history]
    if leaked:
        raise AssertionError(f"{len(leaked)} test target(s) in their user's history, e.g. {leaked[0]}")


def training_examples(table: ItemTable, index: VectorIndex, queries: list[UserQuery], candidates, rank_queries):
    """``(x, y, groups)`` for rankers: features of every candidate (``candidates[i]``: ids and index scores of query
    ``i``, ``rank_queries[i]`` its ``RankingPipeline.query``, as served), ``y`` = 1 for the user's targets.
    Queries whose candidates hold no target are skipped (they carry no ranking signal)."""
    xs, ys, groups = [], [], []
    for q, (ids, scores), rq in zip(queries, candidates, rank_queries):
        y = np.array([i in q.targets for i in ids], np.int32)
        if not y.any():
            continue
        xs.append(build_features(table, table.rows(ids), scores, index.vectors(ids), rq))
        ys.append(y)
        groups.append(len(ids))
    if not xs:
        raise ValueError("no training query has a target among its candidates")
    return np.concatenate(xs), np.concatenate(ys), np.array(groups)

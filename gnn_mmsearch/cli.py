"""``gnn-mmsearch`` command line: ``run`` (Hydra) and ``search`` (from a saved run)."""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from .search import RUN_INFO

USAGE = """usage: gnn-mmsearch COMMAND [ARGS]

commands:
  run [HYDRA OVERRIDES]   build the catalog, extract features, train, index, evaluate (e.g. model.gnn.layers=0, -m for sweeps)
  search [QUERY] [--image PATH] [--product ID] [--run DIR] [-k K] [--mmr-lambda L] [--filter F]
                          answer a query from a saved run (default: the newest run under ./runs)
"""


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        return 0
    command, rest = argv[0], argv[1:]
    if command == "run":
        return _run(rest)
    if command == "search":
        return _search(rest)
    print(f"gnn-mmsearch: unknown command {command!r}\n\n{USAGE}", file=sys.stderr)
    return 2


def _run(overrides: list[str]) -> int:
    import hydra
    from omegaconf import DictConfig

    @hydra.main(version_base="1.3", config_path="pkg://gnn_mmsearch.conf", config_name="config")
    def _job(cfg: DictConfig) -> None:
        from hydra.core.hydra_config import HydraConfig

        from .pipeline import run
        run(cfg, HydraConfig.get().runtime.output_dir)

    sys.argv = [sys.argv[0], *overrides]
    _job()
    return 0


def newest_run(root: Path = Path("runs")) -> Path | None:
    runs = [p.parent for p in root.glob(f"*/{RUN_INFO}")] + [p.parent for p in Path("multirun").glob(f"*/*/{RUN_INFO}")]
    return max(runs, key=lambda p: (p / RUN_INFO).stat().st_mtime) if runs else None


def _search(args: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="gnn-mmsearch search", description="Search the catalog of a saved run.")
    parser.add_argument("query", nargs="?", help="text query")
    parser.add_argument("--image", help="image query (a file path); with a text query, both are combined")
    parser.add_argument("--product", help="find products bought with this product id")
    parser.add_argument("--run", type=Path, help="run directory (default: the newest under ./runs)")
    parser.add_argument("-k", type=int, default=10, help="number of results")
    parser.add_argument("--mmr-lambda", type=float, help="MMR trade-off in [0, 1] (1 = relevance only)")
    parser.add_argument("--filter", help='e.g. "category=Phones;price<=100;in_stock"')
    ns = parser.parse_args(args)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    def fail(msg: str) -> int:
        print(f"gnn-mmsearch search: {msg}", file=sys.stderr)
        return 2

    if ns.product is None and ns.query is None and ns.image is None:
        return fail("give a text query, --image PATH or --product ID")
    if ns.product is not None and (ns.query or ns.image):
        return fail("--product cannot be combined with a text or image query")
    if ns.k < 1:
        return fail("-k must be at least 1")
    if ns.mmr_lambda is not None and not 0 <= ns.mmr_lambda <= 1:
        return fail("--mmr-lambda must be between 0 and 1")
    run_dir = ns.run or newest_run()
    if run_dir is None:
        return fail("no saved run found under ./runs: run `gnn-mmsearch run` first or pass --run DIR")

    from .index import Filter
    from .search import Searcher, format_hits
    try:
        flt = Filter.parse(ns.filter) if ns.filter else None
        searcher = Searcher.from_run(run_dir)
        hits = searcher.search(text=ns.query, image=ns.image, product=ns.product, k=ns.k, filter=flt,
                               mmr_lambda=ns.mmr_lambda)
    except (ValueError, KeyError, FileNotFoundError) as err:
        return fail(err.args[0] if err.args else str(err))
    print(f"run: {run_dir}")
    print(format_hits(hits))
    return 0

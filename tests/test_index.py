import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from gnn_mmsearch.index import INDEXES, Filter, SearchResult, VectorIndex, create_index, load_index

DIM, N, NQ, K = 64, 2000, 100, 10
REPO = Path(__file__).resolve().parents[1]

CONFIGS = {
    "exact": ("exact", {}),
    "hnsw": ("hnsw", {"M": 16, "ef_construction": 100, "ef": 32, "num_threads": 1}),
    "lsh": ("hashing", {"method": "lsh", "bits": 256, "rerank": 50}),  # 32 B/vector vs 256 B float32: 8x
    "itq": ("hashing", {"method": "itq", "bits": 64, "rerank": 50}),  # 8 B/vector: 32x
    "ivf_flat": ("faiss", {"method": "ivf_flat", "nlist": 32, "nprobe": 8}),
    "ivf_pq": ("faiss", {"method": "ivf_pq", "nlist": 32, "nprobe": 8, "m": 16, "rescore": 50}),  # 16 B/vector
}
MIN_RECALL = {"exact": 1.0, "hnsw": 0.95, "lsh": 0.9, "itq": 0.9, "ivf_flat": 0.95, "ivf_pq": 0.95}


def clustered(n: int, dim: int, clusters: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Unit vectors from a Gaussian mixture whose clusters vary in a low-rank subspace, and their cluster ids."""
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((clusters, dim))
    bases = rng.standard_normal((clusters, 8, dim)) / np.sqrt(8)
    lab = rng.integers(clusters, size=n)
    local = np.einsum("nr,nrd->nd", rng.standard_normal((n, 8)), bases[lab])
    x = centers[lab] + local + 0.6 * rng.standard_normal((n, dim))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32), lab


@pytest.fixture(scope="module")
def data():
    x, lab = clustered(N + NQ, DIM, clusters=40, seed=0)
    rng = np.random.default_rng(1)
    ids = [f"p{i}" for i in range(N)]
    attrs = [{"category": ["Root", f"Dept{c % 4}", f"Leaf{c}"],
              "price": None if i % 50 == 0 else float(rng.uniform(1, 200)),
              "in_stock": None if i % 70 == 0 else bool(rng.random() < 0.7)} for i, c in enumerate(lab[:N])]
    for i in range(0, N, N // K):  # exactly K items in a rare category
        attrs[i]["category"] = attrs[i]["category"] + ["Rare"]
    return x[:N], ids, attrs, x[N:]


def build(name: str, data, **overrides) -> VectorIndex:
    kind, params = CONFIGS[name]
    index = create_index(kind, dim=DIM, **{**params, **overrides})
    x, ids, attrs, _ = data
    index.add(x, ids, attrs)
    return index


@pytest.fixture(scope="module")
def exact(data):
    return build("exact", data)


def recall(result: SearchResult, truth: SearchResult) -> float:
    return float(np.mean([len(set(a) & set(b)) / max(1, len(b)) for a, b in zip(result.ids, truth.ids)]))


def matches(attrs: dict, f: Filter) -> bool:
    cats, price, stock = set(attrs["category"]), attrs["price"], attrs["in_stock"]
    return ((f.categories is None or bool(cats & set(f.categories)))
            and (f.price_min is None or (price is not None and price >= f.price_min))
            and (f.price_max is None or (price is not None and price <= f.price_max))
            and (f.in_stock is None or stock is f.in_stock))


def test_registry():
    assert {"exact", "hnsw", "hashing", "faiss"} <= set(INDEXES.names())
    with pytest.raises(ValueError, match="unknown index 'annoy'"):
        create_index("annoy", dim=4)
    with pytest.raises(ValueError, match="index 'hnsw' takes no option 'efs'"):
        create_index("hnsw", dim=4, efs=3)


@pytest.mark.parametrize("name", CONFIGS)
def test_recall_and_scores(name, data, exact):
    x, ids, _, queries = data
    index = build(name, data)
    assert len(index) == N and "p5" in index and "zz" not in index
    assert (index.dim, index.metric, index.kind) == (DIM, "cosine", CONFIGS[name][0])
    res = index.search(queries, K)
    assert recall(res, exact.search(queries, K)) >= MIN_RECALL[name]
    for q, row_ids, scores in zip(queries, res.ids, res.scores):
        assert len(row_ids) == K and np.all(np.diff(scores) <= 1e-6)
        np.testing.assert_allclose(scores, x[[ids.index(i) for i in row_ids]] @ q, atol=1e-5)
    single = index.search(queries[0], K)
    assert single.ids == [res.ids[0]]


def test_exact_matches_brute_force(data, exact):
    x, ids, _, queries = data
    truth = np.argsort(-(queries @ x.T), axis=1)[:, :K]
    assert exact.search(queries, K).ids == [[ids[j] for j in row] for row in truth]


def test_hashing_memory(data):
    index = build("lsh", data)
    assert index._codes[:, :N].nbytes * 8 <= N * DIM * 4  # codes vs float32 vectors
    assert index.mapped_bytes == N * DIM * 4 and isinstance(index._rows.array, np.memmap)
    with pytest.raises(ValueError, match="ITQ codes are at most"):
        create_index("hashing", dim=DIM, method="itq", bits=128)


@pytest.mark.parametrize("name", CONFIGS)
def test_delete_and_reuse(name, data):
    x, ids, _, queries = data
    index = build(name, data)
    gone = ids[::3]
    assert index.delete(gone + ["unknown"]) == len(gone)
    assert len(index) == N - len(gone) and gone[0] not in index
    res = index.search(queries, 50)
    assert not set().union(*map(set, res.ids)) & set(gone)
    assert all(len(r) == 50 for r in res.ids)
    with pytest.raises(KeyError):
        index.vectors([gone[0]])
    # deleted slots are reused: no growth when re-adding as many items
    slots = index._n_slots
    graph_cap = index._graph.get_max_elements() if name == "hnsw" else None
    new_ids = [f"new{i}" for i in range(len(gone))]
    index.add(x[::3], new_ids)
    assert index._n_slots == slots and len(index) == N
    if graph_cap is not None:
        assert index._graph.get_max_elements() == graph_cap
    res = index.search(x[:30:3], 1)
    assert [r[0] for r in res.ids] == new_ids[:10]


def test_hnsw_grows_past_capacity(data, exact):
    x, ids, _, queries = data
    index = create_index("hnsw", dim=DIM, capacity=16, num_threads=1)
    for s in range(0, N, 250):
        index.add(x[s:s + 250], ids[s:s + 250])
    assert len(index) == N and index._graph.get_max_elements() >= N
    assert recall(index.search(queries, K), exact.search(queries, K)) >= 0.95


@pytest.mark.parametrize("name", CONFIGS)
def test_replace_on_readd(name, data):
    x, ids, attrs, _ = data
    index = build(name, data)
    index.add(3 * x[7], ["p0"])  # p0 now points where p7 is; attributes kept
    assert len(index) == N
    np.testing.assert_allclose(index.vectors(["p0"])[0], x[7], atol=1e-6)
    top = index.search(x[7], 2)
    assert set(top.ids[0]) == {"p0", "p7"} and np.allclose(top.scores[0], 1.0, atol=1e-5)
    assert "p0" in index.search(x[7], 2, filter=Filter(categories=attrs[0]["category"][-1])).ids[0]


FILTERS = [
    Filter(categories=["Dept1"]),
    Filter(categories=("Leaf3", "Leaf4")),
    Filter(price_min=50.0, price_max=120.0),
    Filter(in_stock=True),
    Filter(in_stock=False),
    Filter.parse("category=Dept2;price<=80;in_stock"),
    Filter(categories=["Rare"]),  # exactly K matches
]


@pytest.mark.parametrize("name", CONFIGS)
@pytest.mark.parametrize("f", FILTERS, ids=str)
def test_filters(name, f, data, exact):
    _, ids, attrs, queries = data
    index = build(name, data)
    allowed = {i for i, a in zip(ids, attrs) if matches(a, f)}
    res = index.search(queries, K, filter=f)
    assert all(set(r) <= allowed and len(r) == min(K, len(allowed)) for r in res.ids)
    assert recall(res, exact.search(queries, K, filter=f)) >= MIN_RECALL[name] - 0.05


@pytest.mark.parametrize("f", FILTERS[:6], ids=str)
def test_hnsw_filter_inside_graph_search(f, data, exact):
    """With the exact fallback off, the hnswlib filter callback alone must return k matching items."""
    _, ids, attrs, queries = data
    index = build("hnsw", data, exact_below=0)
    allowed = {i for i, a in zip(ids, attrs) if matches(a, f)}
    res = index.search(queries, K, filter=f)
    assert all(set(r) <= allowed and len(r) == K for r in res.ids)
    assert recall(res, exact.search(queries, K, filter=f)) >= 0.95


@pytest.mark.parametrize("name", CONFIGS)
def test_exclude_and_small_index(name, data):
    x, ids, _, _ = data
    index = build(name, data)
    res = index.search(x[:20], K, exclude=[[i] for i in ids[:20]])
    for i, row in enumerate(res.ids):
        assert ids[i] not in row and len(row) == K
    res = index.search(x[:2], K, exclude=["p0", "p1"])  # a bare string is one id
    assert "p0" not in res.ids[0] and "p1" not in res.ids[1]
    rare = Filter(categories=["Rare"])
    res = index.search(x[:1], K, filter=rare, exclude=[["p0"]])
    assert len(res.ids[0]) == K - 1 and "p0" not in res.ids[0]
    kind, params = CONFIGS[name]
    small = create_index(kind, dim=DIM, **{**params, "bits": 32} if name == "itq" else params)
    small.add(x[:40], ids[:40])
    assert len(small.search(x[0], 100).ids[0]) == 40  # k > number of items
    assert small.search(x[0], 5, filter=Filter(categories=["none"])).ids == [[]]


@pytest.mark.parametrize("name", CONFIGS)
def test_save_load_round_trip(name, data, tmp_path):
    x, ids, _, queries = data
    index = build(name, data)
    index.delete(ids[:10])
    path = tmp_path / "index.bin"
    index.save(path)
    options = {} if name == "exact" else {"storage": str(tmp_path)}  # runtime settings may be overridden
    loaded = load_index(path, dim=DIM, metric="cosine", **options)
    assert type(loaded) is type(index) and len(loaded) == len(index)
    for f in (None, FILTERS[5], FILTERS[6]):
        a, b = index.search(queries, K, filter=f), loaded.search(queries, K, filter=f)
        assert a.ids == b.ids and all(np.allclose(s, t) for s, t in zip(a.scores, b.scores))
    np.testing.assert_allclose(loaded.vectors(ids[10:20]), index.vectors(ids[10:20]))
    loaded.add(x[10:20], ids[:10])  # a loaded index stays writable and reuses the freed slots
    assert len(loaded) == N and loaded._n_slots == index._n_slots
    np.testing.assert_allclose(loaded.vectors(ids[:10]), x[10:20], atol=1e-6)
    assert set(loaded.search(x[13], 2).ids[0]) == {"p3", "p13"}
    loaded.save(path)  # overwrite the file it was loaded (and for hashing, memory-mapped) from
    assert load_index(path).search(queries, K).ids == loaded.search(queries, K).ids


@pytest.mark.parametrize("name", CONFIGS)
def test_empty_index_round_trip(name, data, tmp_path):
    x, ids, _, _ = data
    index = create_index(CONFIGS[name][0], dim=DIM, **CONFIGS[name][1])
    assert index.search(x[0], 5).ids == [[]] and index.vectors([]).shape == (0, DIM)
    index.save(tmp_path / "empty.bin")
    loaded = load_index(tmp_path / "empty.bin")
    assert len(loaded) == 0
    loaded.add(x[:100], ids[:100])  # ITQ trains on this first add
    assert loaded.search(x[5], 1).ids == [["p5"]]


def test_load_errors(data, tmp_path):
    path = tmp_path / "index.bin"
    build("exact", data).save(path)
    with pytest.raises(ValueError, match=r"dim=64.*dim=32"):
        load_index(path, dim=32)
    with pytest.raises(ValueError, match=r"metric='cosine'.*metric='l2'"):
        load_index(path, metric="l2")
    bad = tmp_path / "bad.bin"
    bad.write_bytes(b"not an index")
    with pytest.raises(ValueError, match="not a gnn_mmsearch index"):
        load_index(bad)
    bad.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(ValueError, match="truncated"):
        load_index(bad)


def test_invalid_input():
    index = create_index("exact", dim=4)
    with pytest.raises(ValueError, match="shape"):
        index.add(np.ones((2, 5)), ["a", "b"])
    with pytest.raises(ValueError, match="zero"):
        index.add(np.zeros((1, 4)), ["a"])
    with pytest.raises(ValueError, match="more than once"):
        index.add(np.ones((2, 4)), ["a", "a"])
    assert len(index) == 0
    x = np.full((2, 4), 2.0, np.float32)
    index.add(x, ["a", "b"])
    index.add(np.empty((0, 4)), [])
    assert (x == 2.0).all() and len(index) == 2  # the caller's array is not normalised in place
    with pytest.raises(ValueError, match="metric"):
        create_index("exact", dim=4, metric="l2")


def test_filter_parse():
    f = Filter.parse(" category = Phones|Smart Watches ; price>=10; price<=100.5;!in_stock ")
    assert f == Filter(categories=("Phones", "Smart Watches"), price_min=10.0, price_max=100.5, in_stock=False)
    assert Filter.parse("price=5;in_stock=yes") == Filter(price_min=5.0, price_max=5.0, in_stock=True)
    assert Filter.parse("").is_empty
    assert Filter(categories="Phones").categories == ("Phones",)


@pytest.mark.parametrize("text, bad_part", [
    ("category=Phones;prce<=100", "prce<=100"),
    ("price<100", "price<100"),
    ("price<=cheap", "cheap"),
    ("in_stock=maybe", "maybe"),
    ("category=", "category="),
    ("price>=1;price>=2", "price>=2"),
])
def test_filter_parse_errors(text, bad_part):
    with pytest.raises(ValueError, match="Accepted syntax") as err:
        Filter.parse(text)
    assert bad_part in str(err.value)


KILLED_SAVER = textwrap.dedent("""
    import sys, time
    import numpy as np
    from gnn_mmsearch.index import create_index, _io

    path = sys.argv[1]
    rng = np.random.default_rng(0)
    first = create_index("exact", dim=16)
    first.add(rng.standard_normal((100, 16)), [f"a{i}" for i in range(100)])
    first.save(path)
    second = create_index("hnsw", dim=16, num_threads=1)
    second.add(rng.standard_normal((20000, 16)), [f"b{i}" for i in range(20000)])
    write_section = _io._write_section

    def blocking(f, value):  # write half of the graph section, then hang until killed
        if isinstance(value, _io.RawFile):
            f.write(open(value.source, "rb").read(value.nbytes // 2))
            f.flush()
            print("blocked", flush=True)
            time.sleep(600)
        write_section(f, value)

    _io._write_section = blocking
    second.save(path)
""")


def test_kill_during_save_keeps_previous_index(tmp_path):
    path = tmp_path / "index.bin"
    script = tmp_path / "saver.py"
    script.write_text(KILLED_SAVER)
    env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}", "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, str(script), str(path)], stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stdout.readline().strip() == "blocked"
        assert any(p.name.endswith(".tmp") for p in tmp_path.iterdir())  # the new file is half written
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    index = load_index(path)
    assert index.kind == "exact" and len(index) == 100 and "a0" in index
    rng = np.random.default_rng(0)
    assert index.search(rng.standard_normal(16), 1).ids[0][0].startswith("a")
    index.add(rng.standard_normal((5, 16)), [f"c{i}" for i in range(5)])
    index.save(path)  # the stale temporary sibling does not get in the way
    assert len(load_index(path)) == 105


def test_faiss_rescoring_recovers_what_pq_codes_lose(data, exact):
    """4-byte PQ codes rank poorly on their own; re-scoring a deeper shortlist from the mapped vectors restores the
    exact order and exact scores."""
    x, ids, _, queries = data
    truth = exact.search(queries, K)
    codes_only = build("ivf_pq", data, m=4, nprobe=32, rescore=0)
    assert recall(codes_only.search(queries, K), truth) < 0.8
    codes_only.rescore = 2 * N  # every item of every probed list (nprobe = nlist): exact search
    res = codes_only.search(queries, K)
    assert res.ids == truth.ids and all(np.allclose(a, b, atol=1e-5) for a, b in zip(res.scores, truth.scores))
    flat = build("ivf_flat", data, nprobe=32)
    assert flat.search(queries, K).ids == truth.ids


def test_faiss_memory(data):
    index = build("ivf_pq", data)
    ivf = index._ivf
    assert ivf.code_size == 16 and ivf.ntotal == N
    assert index.nbytes == N * (16 + 8) + 32 * DIM * 4 + DIM * 256 * 4  # codes + ids, centroids, PQ codebooks
    assert index.mapped_bytes == N * DIM * 4 and isinstance(index._rows.array, np.memmap)
    assert build("ivf_flat", data).nbytes == N * (DIM * 4 + 8) + 32 * DIM * 4


@pytest.mark.parametrize("name", ["ivf_flat", "ivf_pq"])
@pytest.mark.parametrize("f", FILTERS[:6], ids=str)
def test_faiss_filter_inside_list_scan(name, f, data, exact):
    """With the exact fallback off, the IDSelector scan (nprobe raised by the selectivity) returns k matches."""
    _, ids, attrs, queries = data
    index = build(name, data, exact_below=0)
    allowed = {i for i, a in zip(ids, attrs) if matches(a, f)}
    res = index.search(queries, K, filter=f)
    assert all(set(r) <= allowed and len(r) == K for r in res.ids)
    assert recall(res, exact.search(queries, K, filter=f)) >= 0.95


def test_faiss_trains_on_few_vectors_with_clamped_sizes(data, tmp_path, caplog):
    x, ids, _, _ = data
    index = create_index("faiss", dim=DIM, nlist=64, m=8)
    with caplog.at_level("WARNING", logger="gnn_mmsearch.index.faiss_ivf"):
        index.add(x[:100], ids[:100])
    assert "trained on 100 vectors only: nlist 64 -> 2, nbits 8 -> 6" in caplog.text
    assert (index.nlist, index.nbits, index._ivf.nlist, index._ivf.pq.nbits) == (2, 6, 2, 6)
    assert index.search(x[:5], 1).ids == [[i] for i in ids[:5]]
    index.save(tmp_path / "small.bin")
    loaded = load_index(tmp_path / "small.bin")
    assert (loaded.nlist, loaded.nbits) == (2, 6) and loaded.search(x[:5], 1).ids == [[i] for i in ids[:5]]


def test_faiss_explicit_training(data, exact):
    x, ids, _, queries = data
    index = create_index("faiss", dim=DIM, method="ivf_flat", nlist=16, nprobe=16)
    index.train(x)
    assert index.trained and len(index) == 0
    for s in range(0, N, 500):  # later batches go into the lists trained on all of x
        index.add(x[s:s + 500], ids[s:s + 500])
    assert index.nlist == 16 and index.search(queries, K).ids == exact.search(queries, K).ids
    with pytest.raises(RuntimeError, match="before items are added"):
        index.train(x)


@pytest.mark.parametrize("options, message", [
    ({"method": "hnsw"}, "unknown faiss method 'hnsw'; choose from ivf_flat, ivf_pq"),
    ({"nlist": 0}, "nlist must be >= 1, got 0"),
    ({"nprobe": 0}, "nprobe must be >= 1, got 0"),
    ({"m": 7}, f"m=7 (PQ sub-vectors) must be a positive divisor of dim={DIM}"),
    ({"nbits": 17}, "nbits must be in [1, 16], got 17"),
    ({"rescore": -1}, "rescore must be >= 0, got -1"),
    ({"device": "tpu"}, "device must be 'auto', 'cpu' or 'cuda[:N]', got 'tpu'"),
])
def test_faiss_bad_options(options, message):
    with pytest.raises(ValueError) as err:
        create_index("faiss", dim=DIM, **options)
    assert str(err.value) == message
    create_index("faiss", dim=DIM, method="ivf_flat", m=7)  # PQ options do not constrain IVF-Flat


def test_faiss_cuda_without_gpu_support_searches_on_the_cpu(data, caplog):
    from gnn_mmsearch.index.faiss_ivf import gpu_available

    if gpu_available():
        pytest.skip("this FAISS build has a GPU: the fallback does not apply")
    _, _, _, queries = data
    cpu = build("ivf_pq", data)
    with caplog.at_level("WARNING", logger="gnn_mmsearch.index.faiss_ivf"):
        cuda = build("ivf_pq", data, device="cuda")
        res = cuda.search(queries, K)
    assert "no GPU support" in caplog.text and cuda.device == "cpu"
    assert res.ids == cpu.search(queries, K).ids


def test_search_job_serves_from_a_faiss_index(env, tmp_path):
    from conftest import SMALL_RUN, run_cli

    from gnn_mmsearch.search import Searcher

    out = tmp_path / "run"
    run_cli(out, *SMALL_RUN, "train.max_epochs=2", "index=faiss", "logger=none", "eval.examples=[]")
    index = load_index(out / "index")
    assert index.kind == "faiss" and index.method == "ivf_pq" and index.nlist == 200 // 39  # clamped: 200 products
    assert json.loads((out / "metrics.json").read_text())["index/recall@10"] >= 0.95
    hits = Searcher.from_run(out).search(text="wireless mouse", k=5)
    assert len(hits) == 5

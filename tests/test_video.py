"""Video queries: keyframes evenly spread over a clip (PyAV), their mean image features searched as an image query,
on mp4 files the tests write from catalog images; corrupt or empty videos are a one-line error."""
from __future__ import annotations

import json
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from PIL import Image

from gnn_mmsearch.cli import main
from gnn_mmsearch.data import Catalog
from gnn_mmsearch.features.video import VIDEO_FRAMES, keyframes
from gnn_mmsearch.search import Searcher


def write_mp4(path: Path, frames: list[Image.Image], size: int = 64, fps: int = 10) -> Path:
    """An H.264 mp4 of ``frames`` (resized to ``size`` x ``size``)."""
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.width = stream.height = size
        stream.pix_fmt = "yuv420p"
        for img in frames:
            for packet in stream.encode(av.VideoFrame.from_image(img.convert("RGB").resize((size, size)))):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


@pytest.fixture(scope="module")
def searcher(run_dir) -> Searcher:
    return Searcher.from_run(run_dir)


@pytest.fixture(scope="module")
def catalog(run_dir) -> Catalog:
    return Catalog.load(json.loads((run_dir / "run.json").read_text())["catalog_root"])


def _photo(catalog: Catalog, i: int) -> tuple[str, Image.Image]:
    product = [p for p in catalog.products if catalog.image_file(p) is not None][i]
    with Image.open(catalog.image_file(product)) as img:
        return product.id, img.convert("RGB")


def test_keyframes_are_evenly_spread_over_the_clip(tmp_path):
    levels = [8 * i for i in range(30)]  # frame i is a flat grey of level 8 * i
    clip = write_mp4(tmp_path / "grey.mp4", [Image.new("RGB", (32, 32), (v, v, v)) for v in levels])
    frames = keyframes(clip, 5)
    seen = [int(np.asarray(f).mean().round()) for f in frames]
    expected = [levels[i] for i in np.linspace(0, 29, 5).round().astype(int)]  # frames 0, 7, 14, 22, 29
    assert len(frames) == 5 and max(abs(a - b) for a, b in zip(seen, expected)) <= 3, (seen, expected)
    assert len(keyframes(clip)) == VIDEO_FRAMES
    assert len(keyframes(clip, 100)) == 30  # a short clip: every frame, no more


def test_a_video_of_a_product_photo_finds_that_product(searcher, catalog, tmp_path):
    pid, photo = _photo(catalog, 3)
    clip = write_mp4(tmp_path / "one.mp4", [photo] * 12)
    hits = searcher.search(video=clip, k=5)
    assert hits[0].id == pid
    # served as an image query: the mean image features of the keyframes, through the same hybrid retrieval
    extractor = searcher.encoder.feature_extractor("image")
    pooled = torch.as_tensor(extractor.encode_images(keyframes(clip, 4)).mean(0, keepdims=True))
    assert [h.id for h in searcher.search(video=clip, frames=4, k=5)] == \
        searcher.hybrid.search({"image": pooled}, None, 5).ids[0][:5]


def test_a_clip_of_several_products_pools_their_frames(searcher, catalog, tmp_path):
    shown = [_photo(catalog, i) for i in (0, 1, 2)]
    clip = write_mp4(tmp_path / "three.mp4", [img for _, img in shown for _ in range(4)])
    frames = keyframes(clip, 3)  # frames 0, 6, 11: one of each product
    features = searcher.encoder.query_features(video=clip, frames=3)["image"]
    extractor = searcher.encoder.feature_extractor("image")
    np.testing.assert_allclose(features[0].numpy(), extractor.encode_images(frames).mean(0), rtol=1e-5, atol=1e-5)
    top = {h.id for h in searcher.search(video=clip, frames=3, k=10)}
    assert top & {pid for pid, _ in shown}


def test_cli_video_query(run_dir, catalog, tmp_path, capsys):
    pid, photo = _photo(catalog, 3)
    clip = write_mp4(tmp_path / "clip.mp4", [photo] * 6)
    assert main(["search", "--video", str(clip), "--frames", "3", "--run", str(run_dir), "-k", "3"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[1].split()[2] == pid and len(out.splitlines()) == 4


@pytest.mark.parametrize("case, message", [
    ("empty", "cannot read query video"),
    ("truncated", "cannot read query video"),
    ("not-a-video", "cannot read query video"),
    ("missing", "No such file or directory"),
    ("frames0", "frames must be at least 1, got 0"),
    ("with-image", "an image cannot be combined with a video"),
    ("frames-alone", "frames needs a video"),
])
def test_bad_videos_are_one_line(run_dir, catalog, tmp_path, capsys, case, message):
    good = write_mp4(tmp_path / "good.mp4", [_photo(catalog, 0)[1]] * 6)
    path = tmp_path / f"{case}.mp4"
    if case == "empty":
        path.write_bytes(b"")
    elif case == "truncated":
        path.write_bytes(good.read_bytes()[:600])
    elif case == "not-a-video":
        path.write_text("just some text, not a video\n" * 20)
    args = {"frames0": ["--video", str(good), "--frames", "0"],
            "with-image": ["--video", str(good), "--image", str(catalog.image_file(catalog.products[0]))],
            "frames-alone": ["mug", "--frames", "3"]}.get(case, ["--video", str(path)])
    capsys.readouterr()
    assert main(["search", *args, "--run", str(run_dir)]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.startswith("gnn-mmsearch search: ") and message in err, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    if case in ("empty", "truncated", "not-a-video", "missing"):
        with pytest.raises(ValueError, match="cannot read query video"):
            keyframes(path)

"""Feature extraction: offline encoders, unreadable inputs, the content-keyed cache."""
from __future__ import annotations

import io
import logging
import socket
from pathlib import Path

import numpy as np
import pytest
import timm
import torch
from PIL import Image, ImageDraw

from gnn_mmsearch.data.catalog import Catalog, Product
from gnn_mmsearch.features import (
    FeatureCache,
    ImageEncoder,
    TextEncoder,
    build_image_encoder,
    build_text_encoder,
    extract_features,
)
from gnn_mmsearch.features import _efficientnet_lite0 as lite0

CAT_CLASSES = set(range(281, 286))  # tabby, tiger cat, Persian, Siamese, Egyptian cat
COFFEE_CLASSES = {967, 968, 504}  # espresso, cup, coffee mug


@pytest.fixture(scope="module")
def no_network() -> list:
    """Refuse (and record) outgoing connections and tell huggingface_hub it is offline, for the whole module."""
    attempts = []

    def refuse(*args, **kwargs):
        attempts.append(args)
        raise OSError("network access in a test")

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_HUB_OFFLINE", "1")
        mp.setattr(socket.socket, "connect", refuse)
        mp.setattr(socket, "create_connection", refuse)
        yield attempts


@pytest.fixture(scope="module")
def image_encoder(no_network) -> ImageEncoder:
    return ImageEncoder(batch_size=4)


@pytest.fixture(scope="module")
def text_encoder(no_network) -> TextEncoder:
    return TextEncoder(batch_size=8)


def _jpeg(path: Path, color: str, shape: str = "ellipse") -> Path:
    img = Image.new("RGB", (160, 120), "white")
    draw = ImageDraw.Draw(img)
    getattr(draw, shape)((30, 20, 130, 100), fill=color, outline="black")
    img.save(path, "JPEG")
    return path


def _truncated_jpeg(path: Path) -> Path:
    buf = io.BytesIO()
    Image.new("RGB", (200, 200), "orange").save(buf, "JPEG")
    path.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    return path


def _corrupt(path: Path) -> Path:
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    return path


# ---------------------------------------------------------------------------------------- image encoder
def test_lite0_key_mapping_is_one_to_one():
    source = torch.load(lite0.default_checkpoint(), map_location="cpu", weights_only=True)
    converted = lite0.convert_state_dict(source)
    target = timm.create_model("tf_efficientnet_lite0", pretrained=False).state_dict()
    assert len(converted) == len(source) == len(target)
    assert set(converted) == set(target)
    assert all(converted[k].shape == target[k].shape for k in target)


def test_lite0_mapping_rejects_unknown_keys():
    with pytest.raises(KeyError):
        lite0.convert_state_dict({"_blocks.3._se_reduce.weight": torch.zeros(1)})


@pytest.mark.parametrize("photo, classes, k", [("chelsea", CAT_CLASSES, 1), ("coffee", COFFEE_CLASSES, 3)])
def test_lite0_classifies_photos(image_encoder, photo, classes, k):
    skimage_data = pytest.importorskip("skimage.data")
    x = image_encoder.transform(Image.fromarray(getattr(skimage_data, photo)()).convert("RGB"))[None]
    with torch.inference_mode():
        top = image_encoder.model(x).topk(k).indices[0].tolist()
    assert classes & set(top), top


def test_image_features_are_pre_logits(image_encoder, tmp_path):
    feats, mask = image_encoder.encode([_jpeg(tmp_path / "a.jpg", "red")])
    assert feats.shape == (1, 1280) and feats.dtype == np.float32 and mask.tolist() == [True]
    x = image_encoder.transform(Image.open(tmp_path / "a.jpg").convert("RGB"))[None]
    with torch.inference_mode():
        logits = image_encoder.model(x)
        from_features = image_encoder.model.get_classifier()(torch.from_numpy(feats))
    torch.testing.assert_close(from_features, logits, rtol=1e-4, atol=1e-4)


def test_unreadable_images_are_masked(image_encoder, tmp_path, caplog):
    paths = [
        _jpeg(tmp_path / "good.jpg", "blue"),
        _corrupt(tmp_path / "random.jpg"),
        _truncated_jpeg(tmp_path / "truncated.jpg"),
        None,
        tmp_path / "does_not_exist.jpg",
        _jpeg(tmp_path / "good2.png", "green", "rectangle"),
    ]
    with caplog.at_level(logging.WARNING):
        feats, mask = image_encoder.encode(paths)
    assert mask.tolist() == [True, False, False, False, False, True]
    assert not feats[~mask].any() and feats[mask].any()
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and warnings[0].startswith("3 of 5 images unreadable")
    assert "random.jpg" in warnings[0] and "truncated.jpg" in warnings[0]


def test_local_checkpoint_in_timm_naming(image_encoder, tmp_path):
    checkpoint = tmp_path / "lite0_timm.pth"
    torch.save(image_encoder.model.state_dict(), checkpoint)
    other = build_image_encoder({"image": {"checkpoint": str(checkpoint), "batch_size": 2}, "device": "cpu"})
    assert other.batch_size == 2 and other.config()["weights"]["file"] == "lite0_timm.pth"
    assert other.config() != image_encoder.config()
    paths = [_jpeg(tmp_path / "a.jpg", "purple")]
    np.testing.assert_allclose(other.encode(paths)[0], image_encoder.encode(paths)[0], rtol=1e-5, atol=1e-5)


# ----------------------------------------------------------------------------------------- text encoder
def test_text_encoder(text_encoder):
    texts = ["red running shoes", None, "", "   ", "crimson sneakers for jogging", "stainless steel espresso machine"]
    emb, mask = text_encoder.encode(texts)
    assert emb.shape == (6, 384) and emb.dtype == np.float32 and text_encoder.dim == 384
    assert mask.tolist() == [True, False, False, False, True, True]
    assert not emb[~mask].any()
    np.testing.assert_allclose(np.linalg.norm(emb[mask], axis=1), 1.0, atol=1e-5)
    assert emb[0] @ emb[4] > emb[0] @ emb[5]


def test_default_encoders_load_offline(image_encoder, text_encoder, no_network):
    assert text_encoder.config()["model_name"] == "sentence-transformers/all-MiniLM-L6-v2"
    assert image_encoder.config()["weights"]["file"] == lite0.default_checkpoint().name
    assert no_network == []


# ------------------------------------------------------------------------------------------------ cache
def test_feature_cache_roundtrip(tmp_path):
    cache = FeatureCache(tmp_path, {"encoder": "toy", "dim": 3})
    cache.store(["a", "b"], np.array([[1, 2, 3], [4, 5, 6]], dtype=np.float32), np.array([True, False]))
    cache.store(["c", "a"], np.array([[7, 8, 9], [0, 1, 0]], dtype=np.float32), np.array([True, True]))
    vectors, found, ok = cache.lookup(["a", "b", "c", "zzz", "a"])
    assert found.tolist() == [True, True, True, False, True]
    assert ok.tolist() == [True, False, True, False, True]
    np.testing.assert_array_equal(vectors, [[0, 1, 0], [0, 0, 0], [7, 8, 9], [0, 0, 0], [0, 1, 0]])
    assert (cache.dir / "config.json").exists()
    assert not list(cache.dir.glob(".tmp-*"))
    assert FeatureCache(tmp_path, {"encoder": "toy", "dim": 4}).dir != cache.dir
    with pytest.raises(ValueError):
        cache.store(["x"], np.zeros((1, 4)), np.ones(1, dtype=bool))


@pytest.fixture
def tiny_catalog(tmp_path) -> Catalog:
    root = tmp_path / "catalog"
    (root / "images").mkdir(parents=True)
    _jpeg(root / "images" / "p0.jpg", "red")
    _jpeg(root / "images" / "p1.jpg", "blue", "rectangle")
    _corrupt(root / "images" / "p4.jpg")
    _jpeg(root / "images" / "p5.jpg", "green")
    products = [
        Product("p0", title="Red ball", category=["Toys"], image_path="images/p0.jpg"),
        Product("p1", title="Blue box", brand="Acme", image_path="images/p1.jpg"),
        Product("p2", title="No image at all"),
        Product("p3", title="Image file gone", image_path="images/p3.jpg"),
        Product("p4", description="Corrupt image", image_path="images/p4.jpg"),
        Product("p5", brand="Nameless", image_path="images/p5.jpg"),
    ]
    return Catalog(products, root=root)


def test_extract_features_uses_cache(tiny_catalog, image_encoder, text_encoder, tmp_path, monkeypatch):
    cache_dir = tmp_path / "cache"
    first = extract_features(tiny_catalog, image_encoder, text_encoder, cache_dir)
    assert first.stats == {
        "image_reused": 0, "image_extracted": 3, "image_missing": 2, "image_unreadable": 1,
        "text_reused": 0, "text_extracted": 5, "text_missing": 1,
    }
    assert first.image.shape == (6, 1280) and first.text.shape == (6, 384)
    assert first.image_mask.tolist() == [True, True, False, False, False, True]
    assert first.text_mask.tolist() == [True, True, True, True, True, False]

    def fail(*args, **kwargs):
        raise AssertionError("extracted although cached")

    monkeypatch.setattr(image_encoder, "encode", fail)
    monkeypatch.setattr(text_encoder, "encode", fail)
    second = extract_features(tiny_catalog, image_encoder, text_encoder, cache_dir)
    assert second.stats == {
        "image_reused": 3, "image_extracted": 0, "image_missing": 2, "image_unreadable": 1,
        "text_reused": 5, "text_extracted": 0, "text_missing": 1,
    }
    for name in ("image", "image_mask", "text", "text_mask"):
        assert torch.equal(getattr(first, name), getattr(second, name)), name
    monkeypatch.undo()

    # the corrupt file is fixed: new content, new key, extracted again
    _jpeg(tiny_catalog.root / "images" / "p4.jpg", "yellow")
    third = extract_features(tiny_catalog, image_encoder, text_encoder, cache_dir)
    assert (third.stats["image_extracted"], third.stats["image_reused"], third.stats["image_unreadable"]) == (1, 3, 0)
    assert third.image_mask[4]


def test_changed_encoder_config_misses_cache(tiny_catalog, image_encoder, text_encoder, tmp_path, monkeypatch):
    cache_dir = tmp_path / "cache"
    extract_features(tiny_catalog, image_encoder, text_encoder, cache_dir)
    changed = {**image_encoder.config(), "weights": {"file": "finetuned.pth", "bytes": 1}}
    monkeypatch.setattr(image_encoder, "config", lambda: changed)
    again = extract_features(tiny_catalog, image_encoder, text_encoder, cache_dir)
    assert (again.stats["image_extracted"], again.stats["image_reused"]) == (3, 0)
    assert (again.stats["text_extracted"], again.stats["text_reused"]) == (0, 5)
    assert len(list(cache_dir.glob("*/config.json"))) == 3


def test_build_text_encoder_from_dictconfig(no_network):
    omegaconf = pytest.importorskip("omegaconf")
    cfg = omegaconf.OmegaConf.create({"text": {"model_name": "all-MiniLM-L6-v2", "batch_size": 16}, "device": "cpu"})
    encoder = build_text_encoder(cfg)
    assert encoder.batch_size == 16 and encoder.dim == 384


@pytest.mark.parametrize("encoder_name", ["image_encoder", "text_encoder"])
def test_half_precision_autocast_is_close_to_fp32_and_cached_apart(encoder_name, request, tmp_path, monkeypatch):
    encoder = request.getfixturevalue(encoder_name)
    inputs = ([_jpeg(tmp_path / "a.jpg", "red"), _jpeg(tmp_path / "b.jpg", "blue", "rectangle")]
              if encoder_name == "image_encoder" else ["red leather wallet", "wireless mouse"])
    full, _ = encoder.encode(inputs, progress=False)
    monkeypatch.setattr(encoder, "precision", "bf16")  # bf16 autocast runs on the CPU too
    half, mask = encoder.encode(inputs, progress=False)
    assert half.dtype == np.float32 and mask.all() and not np.array_equal(half, full)
    cosine = (half * full).sum(1) / np.linalg.norm(half, axis=1) / np.linalg.norm(full, axis=1)
    assert cosine.min() > 0.98, cosine
    assert encoder.config()["precision"] == "bf16"  # a separate feature-cache key from fp32's
    monkeypatch.setattr(encoder, "precision", "fp32")
    assert "precision" not in encoder.config()  # fp32 keeps the existing caches valid

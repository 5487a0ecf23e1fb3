"""``device=auto|cpu|cuda[:N]``: resolution, one-line errors, and models that carry all their tensors along."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from gnn_mmsearch.cli import main
from gnn_mmsearch.device import autocast, resolve_device
from gnn_mmsearch.models import EncoderConfig, MultimodalGraphEncoder, create_recommender


def test_auto_is_the_cpu_without_cuda_and_cuda_with_it(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == resolve_device("cpu") == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    assert resolve_device("auto") == resolve_device("cuda") == torch.device("cuda", 0)
    assert resolve_device("CUDA:1") == torch.device("cuda", 1)
    monkeypatch.setenv("LOCAL_RANK", "1")  # torchrun's second process on this node
    assert resolve_device("auto") == torch.device("cuda", 1)
    with pytest.raises(ValueError, match=r"^device='cuda:2': GPU 2 asked for, but 2 CUDA device\(s\) are visible$"):
        resolve_device("cuda:2")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without CUDA")
def test_cuda_without_cuda_is_one_line():
    with pytest.raises(ValueError, match=r"^device='cuda' but .*: use device=cpu or device=auto$"):
        resolve_device("cuda")


@pytest.mark.parametrize("spec", ["tpu", "gpu", "cuda:x", "cuda:-1", ""])
def test_unknown_devices_are_refused(spec):
    with pytest.raises(ValueError, match=r"is not a device: choose auto, cpu, cuda or cuda:N$"):
        resolve_device(spec)


@pytest.mark.parametrize("overrides, message", [
    (["device=tpu"], "gnn-mmsearch run: device='tpu' is not a device: choose auto, cpu, cuda or cuda:N"),
    (["task=recommend", "device=cuda:x"], "gnn-mmsearch run: device='cuda:x' is not a device"),
    (["encoder.device=npu"], "gnn-mmsearch run: encoder.device='npu' is not a device"),
    (["encoder.precision=fp8"], "gnn-mmsearch run: encoder.precision must be one of fp32, fp16, bf16, got 'fp8'"),
] + ([] if torch.cuda.is_available() else [(["device=cuda"], "gnn-mmsearch run: device='cuda' but ")]))
def test_run_refuses_a_bad_device_with_one_line(env, tmp_path, capsys, overrides, message):
    assert main(["run", f"hydra.run.dir={tmp_path / 'run'}", "logger=none", *overrides]) == 2
    err = capsys.readouterr().err
    assert err.startswith(message) and err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "run" / "run.json").exists()


def test_autocast_contexts():
    with autocast(torch.device("cpu"), "bf16"):
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.bfloat16
    with autocast(torch.device("cpu"), "fp32"):
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.float32
    with pytest.raises(ValueError, match="precision must be one of fp32, fp16, bf16, got 'fp64'"):
        autocast(torch.device("cpu"), "fp64")


@pytest.mark.parametrize("name", ["bpr", "lightgcn", "mmgraph", "freedom", "lgmrec", "simgcl", "xsimgcl", "layergcn"])
def test_recommenders_move_every_tensor_with_to(name):
    """The graph adjacency and item features are buffers: ``.to(device)`` takes them along (here to the meta
    device, which stands in for a GPU), and the saved state leaves them out."""
    train = sp.csr_matrix(np.eye(6, 5, dtype=np.float32))
    features = {"image": np.ones((5, 3), np.float32)} if name not in ("bpr", "lightgcn") else None
    model = create_recommender(name, train, features).to("meta")
    assert {t.device.type for t in [*model.parameters(), *model.buffers()]} == {"meta"}
    assert set(model.state_dict()) == {n for n, _ in model.named_parameters()}


def test_encoder_moves_every_tensor_with_to():
    model = MultimodalGraphEncoder(EncoderConfig(image_dim=8, text_dim=4, hidden_dim=8, out_dim=4)).to("meta")
    assert {t.device.type for t in [*model.parameters(), *model.buffers()]} == {"meta"}

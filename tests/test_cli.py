"""What the command line prints besides results: help and argument errors without heavy imports, no library
loading noise, one progress line per epoch when the output is not a terminal."""
from __future__ import annotations

import re
import subprocess
import sys

from gnn_mmsearch.cli import main

HEAVY = ("torch", "torch_geometric", "timm", "sentence_transformers", "transformers", "hydra", "matplotlib", "PIL",
         "numpy", "av")


def test_help_and_argument_errors_import_nothing_heavy():
    """Every command's --help and its argument errors answer before torch, Hydra or PIL are imported (instant)."""
    calls = [["--help"], ["search", "--help"], ["report", "--help"], ["explain", "--help"],
             ["download-images", "--help"], ["search"], ["search", "mug", "-k", "0"], ["explain"],
             ["report"], ["download-images", "meta.json"], ["download-images", "meta.json", "--out", "o",
                                                             "--timeout", "0"], ["nope"]]
    code = ("import contextlib, io, sys\nfrom gnn_mmsearch.cli import main\ncodes = []\n"
            f"for args in {calls!r}:\n"
            "    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):\n"
            "        try:\n            codes.append(main(args))\n"
            "        except SystemExit as e:\n            codes.append(e.code)\n"
            f"print(codes, sorted(m for m in {HEAVY!r} if m in sys.modules))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "[0, 0, 0, 0, 0, 2, 2, 2, 2, 2, 2, 2] []"


def test_run_prints_epochs_and_no_library_loading_messages(first_run):
    _, output = first_run
    assert not re.search(r"Loading weights|Loading SentenceTransformer|from checkpoint|weights from", output)
    epochs = re.findall(r"\] - epoch (\d+): loss \d+\.\d{4}, val recall@10 \d\.\d{4} \(best \d\.\d{4}\); "
                        r"\d+\.\d s \(\d+ links/s\), validation \d+\.\d s$", output,
                        re.MULTILINE)
    assert epochs and epochs == [str(e) for e in range(1, len(epochs) + 1)]  # one line per epoch, in order
    assert re.search(r"relevance epoch 1: loss \d+\.\d{4}, validation \d\.\d{4}", output)


def test_search_and_explain_print_no_loading_bar(run_dir, tmp_path, capsys):
    capsys.readouterr()
    assert main(["search", "wireless mouse", "--run", str(run_dir), "-k", "2"]) == 0
    assert main(["explain", "wireless mouse", "--run", str(run_dir), "--out", str(tmp_path / "why.png")]) == 0
    out, err = capsys.readouterr()
    assert "Loading weights" not in out + err and "it/s]" not in err

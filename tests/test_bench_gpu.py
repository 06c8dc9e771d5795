"""benchmarks/bench_gpu.py is run on a lent GPU machine, where device time is scarce and a
broken script wastes the whole lease: here it runs end to end on the CPU at a tiny size, from
a pack of real cutouts, and must record every step as done."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "benchmarks" / "bench_gpu.py"


@pytest.mark.slow
def test_gpu_rehearsal_runs_every_step_on_the_cpu(shared_data, tmp_path):
    pack, out = tmp_path / "pack", tmp_path / "out"
    made = subprocess.run([sys.executable, str(SCRIPT), "--pack", str(pack), "--data",
                           str(shared_data), "--pack-images", "40"],
                          capture_output=True, text=True, cwd=REPO)
    assert made.returncode == 0, made.stderr
    assert len(list((pack / "gz1_sdss" / "images").iterdir())) == 40
    assert "a device call would send" in made.stdout  # and what to move aside if over 64 MiB
    ran = subprocess.run([sys.executable, str(SCRIPT), "--from", str(pack), "--out", str(out),
                          "--work", str(tmp_path / "work"), "--n", "120", "--device", "cpu",
                          "--image-size", "32", "--batch-size", "16", "--step-timeout", "300"],
                         capture_output=True, text=True, cwd=REPO)
    assert ran.returncode == 0, ran.stdout[-3000:] + ran.stderr[-3000:]
    result = json.loads((out / "bench_gpu.json").read_text())
    failed = {k: v["tail"] for k, v in result["steps"].items() if v["returncode"]}
    assert not failed, failed
    assert set(result["steps"]) == {"prepare", "train", "torchrun", "resume", "evaluate_cpu",
                                    "predict_cpu"}
    assert result["prepare"]["kept"] > 100
    assert [row["epoch"] for row in result["train"]["epochs"]] == [1, 2]
    assert result["train"]["images_per_second"] > 0
    assert result["train"]["config"]["device"] == "cpu"
    assert result["torchrun"]["after_resume"] == [1, 2]  # resumed, not restarted
    assert result["predict_cpu_rows"] == 40
    assert any("one epoch of 170k" in line for line in result["summary"])

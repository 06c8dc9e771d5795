"""``--device`` (issue 17): a device that is not on this machine is refused in one line and exit
2 by every command that runs the network, before anything is read or written."""

from __future__ import annotations

import pytest
import torch

from galaxy_core.cli import main
from galaxy_core.locations import SHIPPED_MODEL_DIR
from galaxy_core.model.device import DeviceError, resolve_device

pytestmark = pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")


@pytest.mark.parametrize("argv", [
    ["evaluate", "--device", "cuda", "--model", str(SHIPPED_MODEL_DIR)],
    ["predict", "IMAGES", "--device", "cuda", "-o", "OUT"],
    ["predict", "IMAGES", "--device", "cuda", "--backend", "onnx", "-o", "OUT"],
])
def test_cuda_without_cuda_is_one_line_and_exit_2(argv, tmp_path, capsys):
    images = tmp_path / "images"
    images.mkdir()
    (images / "a.png").write_bytes(b"not read")
    argv = [str(images) if a == "IMAGES" else str(tmp_path / "out.csv") if a == "OUT" else a
            for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--device cuda" in err[0]
    assert not (tmp_path / "out.csv").exists()


def test_auto_and_cpu_resolve_to_the_cpu_here_and_names_are_checked():
    assert resolve_device("auto").type == resolve_device("cpu").type == "cpu"
    with pytest.raises(DeviceError, match="unknown device"):
        resolve_device("tpu")


def test_running_loss_reads_the_device_only_every_few_steps_off_the_cpu():
    """On a GPU the per-step ``.item()`` would stall the batch pipeline: the running loss is
    read every READ_EVERY steps and at the last one, and its sum is exact whatever the
    schedule (float64, the same as adding Python floats)."""
    from galaxy_core.train.loop import _RunningLoss

    losses = [0.7 + 0.01 * i for i in range(23)]
    every_step = _RunningLoss(torch.device("cpu"))
    assert every_step.every == 1
    sparse = _RunningLoss(torch.device("cpu"))
    sparse.every = _RunningLoss.READ_EVERY  # what a GPU gets
    seen_dense, seen_sparse, python_sum = [], [], 0.0
    for i, value in enumerate(losses):
        loss = torch.tensor(value, dtype=torch.float32)
        last = i == len(losses) - 1
        seen_dense.append(every_step.add(loss, 16, i, last))
        seen_sparse.append(sparse.add(loss, 16, i, last))
        python_sum += loss.item() * 16
    assert every_step.sum() == sparse.sum() == python_sum
    assert seen_dense[-1] == seen_sparse[-1] == python_sum / (16 * len(losses))
    changes = [i for i in range(1, len(losses)) if seen_sparse[i] != seen_sparse[i - 1]]
    assert changes == [10, 20, 22]  # read at steps 0, 10, 20 and the last
    assert len(set(seen_dense)) == len(losses)

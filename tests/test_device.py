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

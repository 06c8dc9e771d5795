"""``galaxy predict --engine ray`` (issue 16, item 5): a Ray Data job on a local 2-CPU Ray gives
the same rows as the local engine on ~100 real cutouts, into CSV and Parquet; without Ray it
says what to install."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest

from galaxy_core.locations import SHIPPED_MODEL_DIR
from tests.conftest import draw_galaxy

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parent.parent
N_REAL = 96


@pytest.fixture(scope="module")
def cutouts(tmp_path_factory) -> Path:
    """~100 real GZ1 cutouts (links), one not-an-image file and a drawn galaxy; synthetic
    galaxies only when the real data is absent."""
    folder = tmp_path_factory.mktemp("ray_inputs") / "cutouts"
    folder.mkdir()
    data = Path(os.environ.get("GALAXY_DATA", REPO.parent / "shared" / "data"))
    real = sorted((data / "gz1_sdss" / "images").glob("*.jpeg"))[:N_REAL]
    for f in real:
        os.symlink(f, folder / f.name)
    for i in range(N_REAL - len(real)):
        draw_galaxy("spiral" if i % 2 else "elliptical", 120, seed=i).save(folder / f"g{i}.png")
    (folder / "notes.txt").write_text("not an image")
    (folder / "broken.jpeg").write_bytes(b"\xff\xd8\xff truncated")
    return folder


def predict(folder: Path, out: Path, *extra: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "galaxy_core.cli", "predict", str(folder), "-o", str(out),
           "--model", str(SHIPPED_MODEL_DIR), "--views", "1", "--batch-size", "16",
           "--accept-at", "0.95", *extra]
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "RAY_ADDRESS": ""}
    return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)


def rows(path: Path) -> list[dict[str, str]]:
    if path.suffix == ".parquet":
        import pandas as pd

        frame = pd.read_parquet(path).astype(object).where(lambda f: f.notna(), "")
        return [{k: _text(v) for k, v in r.items()} for r in frame.to_dict("records")]
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def _text(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


def test_ray_engine_gives_the_local_engines_rows(cutouts, tmp_path):
    local = predict(cutouts, tmp_path / "local.csv", "--workers", "0")
    assert local.returncode == 1, local.stderr[-2000:]  # the broken JPEG is a failure
    ray = predict(cutouts, tmp_path / "ray.csv", "--engine", "ray")
    assert ray.returncode == 1, ray.stderr[-3000:]
    assert "local Ray (2 CPUs)" in ray.stderr or "local Ray" in ray.stderr
    a, b = rows(tmp_path / "local.csv"), rows(tmp_path / "ray.csv")
    assert len(a) == len(b) == N_REAL + 2
    assert a == b, "same rows, same order, same numbers"
    by_name = {Path(r["path"]).name: r for r in b}
    assert by_name["notes.txt"]["error"].startswith("skipped")
    assert by_name["broken.jpeg"]["error"] and not by_name["broken.jpeg"]["label"]
    assert sum(r["label"] in ("spiral", "elliptical") for r in b) == N_REAL


def test_ray_engine_writes_parquet_and_resumes(cutouts, tmp_path):
    out = tmp_path / "ray.parquet"
    first = predict(cutouts, out, "--engine", "ray")
    assert first.returncode == 1, first.stderr[-3000:]
    again = predict(cutouts, out, "--engine", "ray", "--resume")
    assert again.returncode == 1, again.stderr[-3000:]
    assert f"{N_REAL + 2} row(s) already" in again.stderr
    got = rows(out)
    assert len(got) == N_REAL + 2 and len({r["path"] for r in got}) == N_REAL + 2


def test_engine_ray_without_ray_says_what_to_install(cutouts, tmp_path, monkeypatch, capsys):
    from galaxy_core.cli import main

    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    code = main(["predict", str(cutouts), "-o", str(tmp_path / "x.csv"), "--engine", "ray",
                 "--model", str(SHIPPED_MODEL_DIR)])
    err = capsys.readouterr().err
    assert code == 2
    assert "pip install" in err and "ray" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1

"""Data larger than memory (issue 17, items 3 and 4): the cache is read through a memory map and
a batch gathered from it is the same as from the array in memory; a short training run learns
from the mapped cache; ``galaxy prepare --workers N`` decodes in worker processes and writes the
same cache, byte for byte, as one worker; a bad worker count is one line and exit 2; Ctrl-C or a
failing worker leaves no half-written output. All data here is the synthetic fixture of
tests/conftest.py."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import numpy as np
import pytest

from galaxy_core.cli import main
from galaxy_core.config import Config
from galaxy_core.data import cache as cache_module
from galaxy_core.data.cache import CachedImages, decode_all, load_part, training_part
from galaxy_core.data.prepare import PrepareRequest, prepare
from galaxy_core.data.prepared import open_prepared
from galaxy_core.errors import GalaxyError, ImageLoadError

CONFIG = Config(image_size=32, val_fraction=0.2, test_fraction=0.2)


def _prepare(fixture: dict[str, Path], out: Path, workers: int, **changes) -> Path:
    req = PrepareRequest(images=fixture["images_gz2"], out=out, catalogue=fixture["catalogue"],
                         mapping=fixture["mapping"], workers=workers, **changes)
    prepare(req, CONFIG)
    return out


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file()}


def _resident_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS line")


# --- memory-mapped training data -------------------------------------------------------------
def test_cache_is_memory_mapped_and_batches_equal_the_array_in_memory(gz1_fixture, tmp_path):
    prepared = open_prepared(_prepare(gz1_fixture, tmp_path / "out", workers=1))
    part = load_part(prepared, CONFIG.crop_fraction, 32, 0, "train")
    npy = next((tmp_path / "out" / "cache").rglob("split0_train.npy"))
    assert isinstance(np.load(npy, mmap_mode="r"), np.memmap)
    assert isinstance(part.images, CachedImages) and isinstance(part.images.mapped, np.memmap)
    in_memory = np.load(npy)  # the whole part read at once: the reference
    assert part.images.shape == in_memory.shape and len(part.images) == len(in_memory)
    assert part.images.dtype == np.uint8 and part.images.ndim == 4

    batch = 4  # the cache holds several batches: gathering must pick the right rows
    assert len(in_memory) > 2 * batch
    idx = np.sort(np.random.default_rng(1).permutation(len(in_memory))[:batch])
    gathered = part.images[idx]
    assert type(gathered) is np.ndarray and gathered.flags.writeable
    np.testing.assert_array_equal(gathered, in_memory[idx])
    np.testing.assert_array_equal(part.images[3:3 + batch], in_memory[3:3 + batch])
    np.testing.assert_array_equal(part.images[5], in_memory[5])
    np.testing.assert_array_equal(part.images[:, 16, 16], in_memory[:, 16, 16])
    np.testing.assert_array_equal(np.asarray(part.images), in_memory)


def test_max_train_images_keeps_a_view_of_the_map(gz1_fixture, tmp_path):
    prepared = open_prepared(_prepare(gz1_fixture, tmp_path / "out", workers=1))
    full = load_part(prepared, CONFIG.crop_fraction, 32, 0, "train")
    in_memory = np.asarray(full.images)
    config = CONFIG.replace(max_train_images=5, seed=3)
    part = training_part(prepared, config, 0)
    assert isinstance(part.images, CachedImages) and part.images.mapped is not None
    assert len(part) == len(part.images) == 5 and part.images.shape == (5, 32, 32, 3)
    order = part.images.rows
    assert list(order) == sorted(order) and len(set(order)) == 5
    np.testing.assert_array_equal(part.labels, full.labels[order])
    assert list(part.table["objid"]) == list(full.table["objid"].iloc[order])
    np.testing.assert_array_equal(part.images[np.array([0, 2, 4])], in_memory[order[[0, 2, 4]]])
    np.testing.assert_array_equal(part.images[1:4], in_memory[order[1:4]])
    np.testing.assert_array_equal(np.asarray(part.images), in_memory[order])
    again = training_part(prepared, config, 0)
    assert list(again.images.rows) == list(order)  # the same subset every time (seeded)


@pytest.mark.skipif(not Path("/proc/self/status").is_file(), reason="reads /proc (Linux)")
def test_reading_every_batch_does_not_grow_resident_memory(tmp_path):
    """An epoch touches every page of the map; they must not stay resident in the process."""
    rows = 1500  # 1500 x 96 x 96 x 3 = 41 MB, far more than one batch
    npy = tmp_path / "big.npy"
    np.save(npy, np.random.default_rng(0).integers(0, 256, (rows, 96, 96, 3), dtype=np.uint8))
    images = CachedImages(np.load(npy, mmap_mode="r"))
    order = np.random.default_rng(1).permutation(rows)
    before = _resident_kib()
    total = 0
    for start in range(0, rows, 64):
        batch = images[np.sort(order[start:start + 64])]
        total += int(batch[:, 0, 0, 0].sum())
    for start in range(0, rows, 64):
        total += int(images[start:start + 64][:, 0, 0, 0].sum())
    grown_mib = (_resident_kib() - before) / 1024
    size_mib = npy.stat().st_size / 2**20
    assert total > 0
    assert grown_mib < size_mib / 4, (grown_mib, size_mib)


@pytest.mark.slow
def test_short_training_run_learns_from_the_mapped_cache(tmp_path):
    from galaxy_core.train.loop import setup_run, train
    from tests.conftest import write_gz1_fixture

    paths = write_gz1_fixture(tmp_path / "src", n_per_class=10, size=48)
    prepared_dir = tmp_path / "prepared"
    prepare(PrepareRequest(images=paths["images_gz1"], out=prepared_dir, labels=paths["leaf"]),
            CONFIG)
    config = CONFIG.replace(arch="resnet18", epochs=1, batch_size=4, lr=1e-3, warmup_epochs=0,
                            max_train_images=8, patience=5, tta=False)
    state = setup_run(prepared_dir, tmp_path / "probe", config)
    assert isinstance(state.train_part.images, CachedImages)
    assert isinstance(state.train_part.images.mapped, np.memmap)
    assert state.train_part.images.rows is not None and len(state.train_part) == 8
    assert isinstance(state.val_part.images.mapped, np.memmap)

    result = train(prepared_dir, tmp_path / "run", config)
    assert result.state == "finished" and len(result.history) == 1
    row = result.history[0]
    assert np.isfinite(row["train_loss"]) and np.isfinite(row["val_loss"])
    assert (tmp_path / "run" / "best.safetensors").is_file()
    status = json.loads((tmp_path / "run" / "status.json").read_text())
    assert status["state"] == "trained"


# --- prepare with worker processes -----------------------------------------------------------
def test_prepare_with_workers_writes_the_same_bytes(gz1_fixture, tmp_path, monkeypatch):
    monkeypatch.setattr(cache_module, "DECODE_CHUNK", 5)  # chunks straddle the parts
    one = _prepare(gz1_fixture, tmp_path / "one", workers=1)
    two = _prepare(gz1_fixture, tmp_path / "two", workers=2)
    files_one, files_two = _files(one), _files(two)
    assert sorted(files_one) == sorted(files_two)
    assert sum(name.endswith(".npy") for name in files_one) == 3
    for name in files_one:
        if name != "summary.json":
            assert files_one[name] == files_two[name], name
    summaries = [json.loads(files[name]) for files, name in
                 ((files_one, "summary.json"), (files_two, "summary.json"))]
    assert summaries[0] == summaries[1]
    assert summaries[0]["dropped"] == {"uncertain": 3, "image missing": 1,
                                       "image unreadable": 1, "duplicate image": 1}


def test_cache_rows_are_the_decoded_images_of_each_part(gz1_fixture, tmp_path, monkeypatch):
    """Checked against an independent decode of every kept image, and against ``np.save``."""
    monkeypatch.setattr(cache_module, "DECODE_CHUNK", 4)
    prepared = open_prepared(_prepare(gz1_fixture, tmp_path / "out", workers=2))
    table = prepared.split_table(0)
    expected = decode_all([prepared.image_path(n) for n in table["image"]],
                          CONFIG.crop_fraction, 32)
    for part in ("train", "val", "test"):
        npy = next((tmp_path / "out" / "cache").rglob(f"split0_{part}.npy"))
        stored = np.load(npy)
        np.testing.assert_array_equal(stored, expected[(table["split"] == part).to_numpy()])
        buffer = io.BytesIO()
        np.save(buffer, stored)
        assert npy.read_bytes() == buffer.getvalue()  # a standard .npy, header and all


@pytest.mark.parametrize("value", ["0", "-1", "two"])
def test_cli_workers_must_be_a_positive_whole_number(gz1_fixture, tmp_path, capsys, value):
    with pytest.raises(SystemExit) as stop:
        main(["prepare", "--labels", str(gz1_fixture["leaf"]), "--images",
              str(gz1_fixture["images_gz1"]), "--out", str(tmp_path / "out"), "--workers", value])
    err = capsys.readouterr().err.strip()
    assert stop.value.code == 2
    assert err.count("\n") == 0 and "--workers" in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_library_refuses_a_bad_worker_count(gz1_fixture, tmp_path):
    for bad in (0, -3):
        with pytest.raises(GalaxyError, match="workers"):
            _prepare(gz1_fixture, tmp_path / "out", workers=bad)
    assert not (tmp_path / "out").exists()


def test_cli_prepare_with_two_workers(gz1_fixture, tmp_path, capsys):
    code = main(["prepare", "--labels", str(gz1_fixture["leaf"]), "--images",
                 str(gz1_fixture["images_gz1"]), "--out", str(tmp_path / "out"),
                 "--image-size", "32", "--val", "0.2", "--test", "0.2", "--workers", "2"])
    assert code == 0
    assert "kept 10 elliptical, 11 spiral" in capsys.readouterr().out
    assert len(list((tmp_path / "out" / "cache").rglob("*.npy"))) == 3


def _leftovers(parent: Path) -> list[Path]:
    return [p for p in parent.iterdir() if ".prepare-" in p.name] + \
        [p for p in parent.rglob("*.tmp")]


def test_ctrl_c_while_workers_build_the_cache_leaves_nothing(gz1_fixture, tmp_path, monkeypatch):
    monkeypatch.setattr(cache_module, "DECODE_CHUNK", 3)
    calls = []

    def interrupt(done: int, total: int) -> None:
        calls.append(done)
        if len(calls) == 2:  # some chunks written, others still in the workers
            raise KeyboardInterrupt

    req = PrepareRequest(images=gz1_fixture["images_gz2"], out=tmp_path / "out",
                         catalogue=gz1_fixture["catalogue"], mapping=gz1_fixture["mapping"],
                         workers=2)
    with pytest.raises(KeyboardInterrupt):
        prepare(req, CONFIG, cache_progress=interrupt)
    assert len(calls) == 2
    assert not (tmp_path / "out").exists()
    assert not _leftovers(tmp_path)


def test_a_failing_worker_is_one_error_and_leaves_nothing(gz1_fixture, tmp_path):
    """An image that vanishes between the check and the cache fails in a worker process: the
    error reaches the caller as the project's own error, and nothing is installed."""
    victim = gz1_fixture["images_gz2"] / "1005.jpg"
    assert victim.is_file()

    def remove_after_check(done: int, total: int) -> None:
        if done == total:
            victim.unlink()

    req = PrepareRequest(images=gz1_fixture["images_gz2"], out=tmp_path / "out",
                         catalogue=gz1_fixture["catalogue"], mapping=gz1_fixture["mapping"],
                         workers=2)
    with pytest.raises(ImageLoadError):
        prepare(req, CONFIG, progress=remove_after_check)
    assert not (tmp_path / "out").exists()
    assert not _leftovers(tmp_path)


def test_rebuilding_a_cache_in_place_is_atomic(gz1_fixture, tmp_path, monkeypatch):
    """``load_part`` rebuilds a missing part into the prepared folder itself: a failure must
    leave the other parts' files as they were and no temporary file behind."""
    prepared = open_prepared(_prepare(gz1_fixture, tmp_path / "out", workers=1))
    folder = next((tmp_path / "out" / "cache").glob("32px_*"))
    before = {p.name: p.read_bytes() for p in folder.iterdir() if p.name != "split0_val.npy"}
    (folder / "split0_val.npy").unlink()

    def broken(names, *args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(cache_module, "decode_into_files", broken)
    with pytest.raises(OSError):
        load_part(prepared, CONFIG.crop_fraction, 32, 0, "val")
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before
    monkeypatch.undo()
    part = load_part(prepared, CONFIG.crop_fraction, 32, 0, "val")
    assert len(part) == len(part.table) > 0


def test_prepare_checks_disk_space_not_memory(gz1_fixture, tmp_path, capsys, monkeypatch):
    """The cache is never held in memory, so only the disk can refuse it, before any decoding."""
    import shutil

    import galaxy_core.data.prepare as prepare_module

    real = shutil.disk_usage
    monkeypatch.setattr(prepare_module.shutil, "disk_usage",
                        lambda path: real(path)._replace(free=1000))
    code = main(["prepare", "--labels", str(gz1_fixture["leaf"]), "--images",
                 str(gz1_fixture["images_gz1"]), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.count("\n") == 0 and "disk" in err
    assert not (tmp_path / "out").exists()


def test_workers_default_to_the_cpus():
    from galaxy_core.cli import build_parser

    args = build_parser().parse_args(["prepare", "--labels", "L", "--images", "I", "--out", "O"])
    expected = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    assert args.workers == expected


@pytest.mark.parametrize("workers", [1, 2])
def test_names_that_leave_the_image_folder_are_never_read(tmp_path, workers):
    """The check that a catalogue's image name stays inside the image folder runs in the
    workers now: a ``..`` name and a link to a file outside are missing images, as in process."""
    import pandas as pd

    from galaxy_core.data import selection
    from tests.conftest import draw_galaxy

    images = tmp_path / "images"
    images.mkdir()
    secret = tmp_path / "secret.png"
    draw_galaxy("spiral", 32, seed=1).save(secret)
    draw_galaxy("elliptical", 32, seed=2).save(images / "ok.png")
    (images / "link.png").symlink_to(secret)
    names = ["ok.png", "../secret.png", "link.png", "", "nope.png"] * 10  # > one chunk
    frame = pd.DataFrame({"image": names, "drop_reason": [""] * len(names)})
    out = selection.check_images(frame, images, workers=workers)
    missing = selection.REASON_MISSING
    assert out["drop_reason"].tolist()[:5] == ["", missing, missing, missing, missing]
    assert set(out["drop_reason"][names.index("ok.png") + 5::5]) == {selection.REASON_DUPLICATE}


@pytest.mark.realdata
@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="glibc's malloc on Linux")
def test_workers_reuse_freed_memory_instead_of_faulting_it_in_per_image(shared_data):
    """A fresh worker process used to map the large buffers of every check afresh (glibc
    serves blocks over 128 KB with mmap), faulting about 300 pages in per real GZ1 cutout: 60 %
    more CPU per image than the same work in a long-running process. Workers now keep freed
    memory (measured: 2 faults for 200 cutouts, against 63,598 without)."""
    from galaxy_core.data.pool import Workers
    from tests.pool_tasks import check_and_count_faults

    root = (shared_data / "gz1_sdss" / "images").resolve()
    names = sorted(p.name for p in root.glob("*.jpeg"))[:40]
    with Workers(2) as workers:
        faults = workers.pool.submit(check_and_count_faults, names, root).result()
    assert faults < 20 * 20, faults  # 20 cutouts: under 20 pages each (was about 300)

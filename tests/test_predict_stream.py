"""``galaxy predict`` at survey scale: rows streamed to CSV or Parquet, ``--resume`` after a
``kill -9``, catalogues (paths or image bytes) with their id columns, worker processes and
``--views``. Every comparison is against a run made here, never against stored numbers.

The model is a tiny untrained resnet18 (32 px) whose OOD reference is fitted on the same kind
of synthetic galaxies the tests classify, so most inputs are usable for ``--prior estimate``;
a low temperature spreads its probabilities so that 4-decimal cells tell runs apart.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from galaxy_core.cli import main
from galaxy_core.predict.run_record import read_record, record_path
from galaxy_core.predict.writers import read_rows
from tests.conftest import draw_galaxy

ROOT = Path(__file__).resolve().parents[1]


# --- fixtures ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    """resnet18 at 32 px with a training mix (for --prior) and an OOD reference fitted on
    framed and whole-picture synthetic galaxies (so the test galaxies are in distribution)."""
    from galaxy_core.config import Config
    from galaxy_core.model.build import build_model
    from galaxy_core.model.inference import run_network
    from galaxy_core.model.ood import fit_ood, save_ood
    from galaxy_core.model.store import save_model
    from galaxy_core.predict.classify import framed_input
    from galaxy_core.predict.plausibility import whole_frame

    folder = tmp_path_factory.mktemp("model") / "tiny"
    torch.manual_seed(0)
    config = Config(arch="resnet18", image_size=32)
    model = build_model("resnet18").eval()
    save_model(folder, model, config, {
        "temperature": 0.01, "logit_bias": [0.0, 0.0],
        "training": {"class_counts": {"elliptical": 74, "spiral": 26}}})
    pictures = [draw_galaxy("spiral" if i % 2 else "elliptical", 64, seed=1000 + i)
                for i in range(80)]
    arrays = np.stack([framed_input(config, p, "auto")[0] for p in pictures]
                      + [whole_frame(p, 32) for p in pictures])
    out = run_network(model, arrays, config.mean, config.std, tta=False, features=True)
    labels = np.arange(len(arrays)) % 2
    state, _ = fit_ood(out.features[::2], labels[::2], out.features[1::2], arrays[1::2])
    save_ood(folder, state)
    return folder


def write_images(folder: Path, n: int, extras: bool = False) -> list[Path]:
    """``n`` synthetic galaxies as PNG (and, with ``extras``, a README and a broken JPEG)."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        path = folder / f"g{i:03d}.png"
        draw_galaxy(("spiral", "elliptical", "spiral")[i % 3], 64, seed=i).save(path)
        paths.append(path)
    if extras:
        (folder / "README.txt").write_text("not an image\n")
        (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    return paths


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("images") / "in"
    write_images(folder, 10, extras=True)
    return folder


def predict(*args: object, capsys=None) -> tuple[int, str, str]:
    """``galaxy predict ARGS`` in process: (exit code, stdout, stderr). One view unless ARGS
    say otherwise: what is tested here does not depend on the views, and one is 8x faster."""
    if "--views" not in args:
        args = (*args, "--views", 1)
    code = main(["predict", *map(str, args)])
    if capsys is None:
        return code, "", ""
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def rows_of(path: Path) -> list[dict[str, str]]:
    return [dict(row) for row in read_rows(path)]


@pytest.fixture(scope="module")
def reference(model_dir, images, tmp_path_factory) -> Path:
    """An uninterrupted CSV run over ``images`` (batch size 4, in process)."""
    out = tmp_path_factory.mktemp("ref") / "ref.csv"
    code, _, _ = predict(images, "--model", model_dir, "-o", out, "--batch-size", 4,
                         "--workers", 0)
    assert code == 1  # the broken JPEG
    return out


# --- streaming, formats, workers ----------------------------------------------------------------
def test_reference_run_has_a_row_per_entry(reference, images):
    rows = rows_of(reference)
    assert sorted(Path(r["path"]).name for r in rows) == sorted(p.name for p in images.iterdir())
    by_name = {Path(r["path"]).name: r for r in rows}
    assert by_name["README.txt"]["error"].startswith("skipped")
    assert by_name["broken.jpg"]["error"] and by_name["broken.jpg"]["label"] == ""
    good = [r for r in rows if not r["error"]]
    assert len(good) == 10 and {r["label"] for r in good} <= {"spiral", "elliptical"}
    assert len({r["p_spiral"] for r in good}) > 3  # the answers differ from image to image


def test_csv_and_parquet_outputs_hold_the_same_rows(model_dir, images, reference, tmp_path):
    import pandas as pd

    out = tmp_path / "out.parquet"
    code, _, _ = predict(images, "--model", model_dir, "-o", out, "--batch-size", 4,
                         "--workers", 0)
    assert code == 1 and out.is_dir()
    assert rows_of(out) == rows_of(reference)
    table = pd.read_parquet(out)  # the folder reads as one table, typed
    assert len(table) == len(rows_of(reference))
    assert table["p_spiral"].dtype == np.float64 and table["path"].dtype != np.float64


def test_workers_give_the_same_rows_as_in_process(model_dir, images, reference, tmp_path):
    out = tmp_path / "workers.csv"
    code, _, _ = predict(images, "--model", model_dir, "-o", out, "--batch-size", 4,
                         "--workers", 2)
    assert code == 1
    assert out.read_bytes() == reference.read_bytes()


def test_stdout_streams_the_same_csv(model_dir, images, reference, capsys):
    code, out, _ = predict(images, "--model", model_dir, "--batch-size", 4, "--workers", 0,
                           capsys=capsys)
    assert code == 1
    assert out == reference.read_text()


def test_views_1_and_8_differ_and_are_both_valid(model_dir, images, tmp_path):
    answers = {}
    for views in (1, 8):
        out = tmp_path / f"v{views}.csv"
        assert predict(images, "--model", model_dir, "-o", out, "--views", views,
                       "--workers", 0)[0] == 1
        rows = [r for r in rows_of(out) if not r["error"]]
        for r in rows:
            p, q = float(r["p_spiral"]), float(r["p_elliptical"])
            assert 0 <= p <= 1 and abs(p + q - 1) < 2e-4 and r["label"] in ("spiral",
                                                                             "elliptical")
            assert r["ood_score"] != ""
        answers[views] = [r["p_spiral"] for r in rows]
    assert len(answers[1]) == len(answers[8])
    assert answers[1] != answers[8]


def test_bad_views_value_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as stop:
        main(["predict", "x.jpg", "--views", "3"])
    assert stop.value.code == 2


# --- existing outputs and resume ---------------------------------------------------------------
@pytest.mark.parametrize("name", ["out.csv", "out.parquet"])
def test_existing_output_is_refused_without_resume(name, model_dir, images, tmp_path, capsys):
    out = tmp_path / name
    assert predict(images, "--model", model_dir, "-o", out, "--workers", 0, capsys=capsys)[0] == 1
    before = rows_of(out)
    code, stdout, err = predict(images, "--model", model_dir, "-o", out, "--workers", 0,
                                capsys=capsys)
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and stdout == "" and len(lines) == 1, err
    assert "already exists" in lines[0] and "--resume" in lines[0]
    assert rows_of(out) == before


def test_resume_after_sigkill_gives_every_input_once(model_dir, tmp_path):
    """A run whose main process is killed with SIGKILL mid-way, its last line torn, continues
    with --resume to exactly the rows of a run never stopped; its workers end with it."""
    folder = tmp_path / "many"
    inputs = write_images(folder, 24)
    out = tmp_path / "killed.csv"
    command = [sys.executable, "-m", "galaxy_core.cli", "predict", str(folder), "--model",
               str(model_dir), "-o", str(out), "--batch-size", "2", "--workers", "2",
               "--views", "1"]
    proc = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, start_new_session=True)
    try:
        deadline = time.monotonic() + 180
        while not (out.is_file() and out.read_bytes().count(b"\n") >= 3):
            if proc.poll() is not None:
                pytest.fail(f"the run ended before it was killed: {proc.stderr.read()[-500:]}")
            assert time.monotonic() < deadline, "no rows within 180 s"
            time.sleep(0.005)
        workers = _children(proc.pid)
        os.kill(proc.pid, signal.SIGKILL)  # the main process only, as kill -9 PID does
        proc.wait()
        deadline = time.monotonic() + 15
        while any(_alive(pid) for pid in workers) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert workers and not any(_alive(pid) for pid in workers), "workers outlived the run"
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # whatever is left of this run's group
        except ProcessLookupError:
            pass
        proc.wait()
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL
    written = len(rows_of(out))
    assert 2 <= written < len(inputs), written
    with open(out, "ab") as handle:  # what a kill during a write leaves: half a row
        handle.write(f"{folder}/g999.png,spir".encode())

    assert predict(folder, "--model", model_dir, "-o", out, "--resume", "--batch-size", 2,
                   "--workers", 0)[0] == 0
    whole = tmp_path / "whole.csv"
    assert predict(folder, "--model", model_dir, "-o", whole, "--batch-size", 2,
                   "--workers", 0)[0] == 0
    resumed = rows_of(out)
    paths = [r["path"] for r in resumed]
    assert len(paths) == len(set(paths)) == len(inputs)  # none lost, none twice
    assert resumed == rows_of(whole)
    assert out.read_text().count("g999") == 0


def _children(pid: int) -> list[int]:
    """The processes whose parent is ``pid`` (Linux /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.append(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    """Running (a zombie waiting for its new parent to reap it has stopped)."""
    try:
        return (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _interrupt_after(batches: int):
    seen = []

    def progress(n: int) -> None:
        seen.append(n)
        if len(seen) >= batches:
            raise KeyboardInterrupt
    return progress


def test_parquet_resume_after_interrupt_and_orphan_part(model_dir, images, reference, tmp_path,
                                                         monkeypatch):
    """Parts written before a stop stay; a part a kill left half-renamed is removed; --resume
    makes only the rows not in a part, and the folder ends equal to the CSV reference."""
    from galaxy_core.model.store import load_model
    from galaxy_core.predict import writers
    from galaxy_core.predict.jobs import path_jobs
    from galaxy_core.predict.runner import PredictionRun, PredictOptions

    monkeypatch.setattr(writers, "PART_ROWS", 3)
    out = tmp_path / "out.parquet"
    run = PredictionRun(load_model(model_dir), PredictOptions(output=out, batch_size=2,
                                                                   views=1))
    with pytest.raises(KeyboardInterrupt):
        run.classify(run.skip_done(path_jobs([images])), _interrupt_after(4))
    run.close()
    parts = writers.part_files(out)
    assert len(parts) >= 2 and len(rows_of(out)) == 8  # 4 batches of 2, all flushed on close
    (out / ".part-000099.parquet.x1y2.tmp").write_bytes(b"PAR1 half written")
    monkeypatch.setattr(writers, "PART_ROWS", 5000)
    assert predict(images, "--model", model_dir, "-o", out, "--resume", "--batch-size", 4,
                   "--workers", 0)[0] == 1
    assert rows_of(out) == rows_of(reference)
    assert not list(out.glob("*.tmp"))


def test_resume_refuses_inputs_that_changed(model_dir, images, reference, tmp_path, capsys):
    out = tmp_path / "out.csv"
    lines = reference.read_text().splitlines(keepends=True)
    out.write_text("".join(lines[:5]))
    shutil.copy(record_path(reference), record_path(out))  # the stopped run's record
    other = tmp_path / "other"
    shutil.copytree(images, other)
    (other / "g000.png").unlink()
    code, _, err = predict(other, "--model", model_dir, "-o", out, "--resume", capsys=capsys)
    assert code == 2 and "changed" in err and len(err.strip().splitlines()) == 1
    assert out.read_text() == "".join(lines[:5])


def test_resume_never_cuts_a_file_it_did_not_write(model_dir, images, tmp_path, capsys):
    out = tmp_path / "notes.csv"
    out.write_bytes(b"my,own\ndata,here\nno newline at the end")
    code, _, err = predict(images, "--model", model_dir, "-o", out, "--resume", capsys=capsys)
    assert code == 2 and "columns my,own" in err
    assert out.read_bytes() == b"my,own\ndata,here\nno newline at the end"


def test_resume_of_a_finished_output_adds_nothing(model_dir, images, reference, tmp_path,
                                                  capsys):
    out = tmp_path / "out.csv"
    shutil.copy(reference, out)
    shutil.copy(record_path(reference), record_path(out))  # the finished run's record
    code, _, err = predict(images, "--model", model_dir, "-o", out, "--resume", "--workers", 0,
                           capsys=capsys)
    assert code == 1 and "wrote 0 rows" in err
    assert out.read_bytes() == reference.read_bytes()


# --- the run record: resuming with other options is refused -----------------------------------
def test_every_output_records_what_made_its_rows(model_dir, images, reference, tmp_path):
    record = read_record(reference)
    assert record is not None and record.views == 1 and record.backend == "torch"
    assert record.survey_match == "auto" and record.model == str(model_dir)
    out = tmp_path / "out.parquet"
    assert predict(images, "--model", model_dir, "-o", out, "--views", 4, "--workers", 0)[0] == 1
    assert (out / ".galaxy-run.json").is_file() and read_record(out).views == 4


@pytest.mark.parametrize("change, named", [(("--views", 4), "--views 4"),
                                           (("--survey-match", "off"), "--survey-match off")])
def test_resume_with_other_options_is_refused(model_dir, images, reference, tmp_path, capsys,
                                              change, named):
    """Rows made with other options would be appended to the table with nothing to show where
    they start; the output and its record stay as they were."""
    out = tmp_path / "out.csv"
    lines = reference.read_text().splitlines(keepends=True)
    out.write_text("".join(lines[:5]))
    shutil.copy(record_path(reference), record_path(out))
    before = record_path(out).read_bytes()
    code, _, err = predict(images, "--model", model_dir, "-o", out, "--resume", *change,
                           capsys=capsys)
    assert code == 2 and "other options" in err and named in err
    assert out.read_text() == "".join(lines[:5]) and record_path(out).read_bytes() == before


def test_resume_with_another_model_is_refused(model_dir, images, reference, tmp_path, capsys):
    from galaxy_core.model.build import build_model
    from galaxy_core.model.store import load_model, save_model

    torch.manual_seed(7)
    other = tmp_path / "other_model"
    loaded = load_model(model_dir)
    save_model(other, build_model("resnet18").eval(), loaded.config, loaded.meta)
    shutil.copy(model_dir / "ood.safetensors", other / "ood.safetensors")
    out = tmp_path / "out.csv"
    out.write_text("".join(reference.read_text().splitlines(keepends=True)[:5]))
    shutil.copy(record_path(reference), record_path(out))
    code, _, err = predict(images, "--model", other, "-o", out, "--resume", capsys=capsys)
    assert code == 2 and "another model" in err
    assert len(out.read_text().splitlines()) == 5


def test_an_output_with_rows_but_no_record_is_not_resumed(model_dir, images, reference,
                                                          tmp_path, capsys):
    """Its rows cannot be checked against this run's options (issue 25, item 15: taking them
    as made with this run's let --views 1 continue --views 8 rows); the output stays as it
    was and gets no record. Every release writes the record."""
    out = tmp_path / "old.csv"
    out.write_text("".join(reference.read_text().splitlines(keepends=True)[:5]))
    before = out.read_bytes()
    code, _, err = predict(images, "--model", model_dir, "-o", out, "--resume", "--workers", 0,
                           capsys=capsys)
    assert code == 2 and "no run record" in err and len(err.strip().splitlines()) == 1
    assert out.read_bytes() == before and read_record(out) is None


def test_a_damaged_record_is_one_clear_error(model_dir, images, reference, tmp_path, capsys):
    out = tmp_path / "out.csv"
    shutil.copy(reference, out)
    record_path(out).write_text('{"views": ')
    code, _, err = predict(images, "--model", model_dir, "-o", out, "--resume", capsys=capsys)
    assert code == 2 and "damaged" in err and len(err.strip().splitlines()) == 1
    assert out.read_bytes() == reference.read_bytes()


# --- --prior estimate: the second pass ----------------------------------------------------------
@pytest.fixture(scope="module")
def many(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("many") / "in"
    write_images(folder, 30)
    return folder


def test_prior_estimate_pass_matches_the_in_memory_answer(model_dir, many, tmp_path, capsys):
    """The pass over the written rows gives what the dashboard's in-memory path gives (the
    same per-image steps, then :func:`apply_prior` on the whole list), to the 4th decimal."""
    from galaxy_core.model.store import load_model
    from galaxy_core.predict.classify import finish_prepared, prepare_source
    from galaxy_core.predict.inputs import iter_inputs
    from galaxy_core.predict.population import apply_prior

    loaded = load_model(model_dir)
    entries = list(iter_inputs([many]))
    preds = [pred for start in range(0, len(entries), 8) for pred in finish_prepared(
        loaded, [prepare_source(loaded.config, e) for e in entries[start:start + 8]], 8,
        views=1)]
    used = apply_prior(preds, loaded.meta, "estimate")
    outputs = {}
    for name in ("est.csv", "est.parquet"):
        out = tmp_path / name
        code, _, err = predict(many, "--model", model_dir, "-o", out, "--prior", "estimate",
                               "--batch-size", 8, "--workers", 0, capsys=capsys)
        assert code == 0 and "estimated spiral fraction" in err
        outputs[name] = rows_of(out)
    rows = outputs["est.csv"]
    assert rows == outputs["est.parquet"]
    assert [r["path"] for r in rows] == [p.source for p in preds]
    assert abs(float(rows[0]["prior"]) - used.fraction) < 2e-3
    assert abs(used.fraction - 0.2627) > 0.01  # the pass moved them off the training mix
    for row, pred in zip(rows, preds):
        assert abs(float(row["p_spiral"]) - pred.p_spiral) < 2e-3
        assert row["label"] == pred.label or abs(pred.p_spiral - 0.5) < 2e-3
    code, stdout, _ = predict(many, "--model", model_dir, "--prior", "estimate",
                              "--batch-size", 8, "--workers", 0, capsys=capsys)
    assert code == 0 and stdout == (tmp_path / "est.csv").read_text()


def test_resume_with_another_prior_moves_the_earlier_rows(model_dir, many, tmp_path):
    half, whole = tmp_path / "half.csv", tmp_path / "whole.csv"
    assert predict(many, "--model", model_dir, "-o", whole, "--prior", "0.5",
                   "--workers", 0)[0] == 0
    assert predict(many, "--model", model_dir, "-o", half, "--workers", 0)[0] == 0
    lines = half.read_text().splitlines(keepends=True)
    half.write_text("".join(lines[:11]))  # 10 rows at the training mix
    assert predict(many, "--model", model_dir, "-o", half, "--prior", "0.5", "--resume",
                   "--workers", 0)[0] == 0
    moved, direct = rows_of(half), rows_of(whole)
    assert {r["prior"] for r in moved} == {"0.5000"}
    for a, b in zip(moved, direct, strict=True):  # moved from 4-decimal cells: 4th decimal
        assert a["path"] == b["path"] and abs(float(a["p_spiral"]) - float(b["p_spiral"])) < 3e-4


# --- catalogues ---------------------------------------------------------------------------------
OBJID0 = 587722981741363200  # 18 digits: beyond float precision, must come through as text


@pytest.fixture
def catalogue(tmp_path) -> dict[str, object]:
    folder = tmp_path / "survey"
    paths = write_images(folder / "cutouts", 5)
    absolute = write_images(tmp_path / "elsewhere", 1)[0]
    rows = [("cutouts/g000.png", "00:00:00.41", "-10:22:25.7"),
            ("cutouts/g001.png", "00:01:00.00", "+01:00:00.0"),
            (str(absolute), "12:00:00.00", "note, with comma"),
            ("", "00:02:00.00", "+02:00:00.0"),             # bad row: no path
            ("cutouts/missing.png", "00:03:00.00", "x"),    # a file that is not there
            ("cutouts/g004.png", "00:04:00.00", "line\nbreak")]
    import csv

    with open(folder / "cat.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["OBJID", "RA", "DEC", "file", "other"])
        for i, (path, ra, dec) in enumerate(rows):
            writer.writerow([OBJID0 + i, ra, dec, path, "x"])
    return {"csv": folder / "cat.csv", "rows": rows, "paths": paths, "absolute": absolute}


def test_catalogue_carries_id_columns_and_reports_bad_rows(model_dir, catalogue, tmp_path):
    out = tmp_path / "out.csv"
    code, _, _ = predict("--catalogue", catalogue["csv"], "--path-column", "file",
                         "--id-columns", "OBJID,RA,DEC", "--model", model_dir, "-o", out,
                         "--workers", 0)
    assert code == 1  # the bad row and the missing file
    header = out.read_text().splitlines()[0].split(",")
    assert header[:4] == ["OBJID", "RA", "DEC", "path"]
    rows = rows_of(out)
    assert len(rows) == len(catalogue["rows"])
    folder = catalogue["csv"].parent
    for i, (row, (path, ra, dec)) in enumerate(zip(rows, catalogue["rows"])):
        assert row["OBJID"] == str(OBJID0 + i) and row["RA"] == ra
        assert row["DEC"] == dec.replace("\n", "\\n")  # one line per row, escaped
        if path and not path.startswith("/"):
            assert row["path"] == str(folder / path)  # relative to the catalogue's folder
    assert rows[2]["path"] == str(catalogue["absolute"]) and rows[2]["label"] != ""
    assert "catalogue row 4" in rows[3]["error"] and "no path" in rows[3]["error"]
    assert rows[4]["error"] and rows[4]["label"] == ""
    assert [bool(r["error"]) for r in rows] == [False, False, False, True, True, False]


def test_catalogue_resume_continues_by_row(model_dir, catalogue, tmp_path):
    whole, part = tmp_path / "whole.csv", tmp_path / "part.csv"
    args = ["--catalogue", catalogue["csv"], "--path-column", "file", "--id-columns", "OBJID",
            "--model", model_dir, "--workers", 0]
    assert predict(*args, "-o", whole)[0] == 1
    lines = whole.read_text().splitlines(keepends=True)
    part.write_text("".join(lines[:3]) + lines[3][:10])  # two rows and a torn third
    shutil.copy(record_path(whole), record_path(part))  # the stopped run's record
    assert predict(*args, "-o", part, "--resume")[0] == 1
    assert part.read_bytes() == whole.read_bytes()


@pytest.mark.parametrize("option", ["--path-column", "--id-columns"])
def test_catalogue_missing_column_is_one_usage_line(option, model_dir, catalogue, tmp_path,
                                                     capsys):
    args = {"--path-column": ["--path-column", "nope"],
            "--id-columns": ["--path-column", "file", "--id-columns", "OBJID,nope"]}[option]
    code, out, err = predict("--catalogue", catalogue["csv"], *args, "--model", model_dir,
                             "-o", tmp_path / "o.csv", capsys=capsys)
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and out == "" and len(lines) == 1 and "'nope'" in lines[0], err
    assert not (tmp_path / "o.csv").exists()


def test_catalogue_and_paths_together_is_a_usage_error(model_dir, catalogue, images, capsys):
    code, _, err = predict(images, "--catalogue", catalogue["csv"], "--path-column", "file",
                           "--model", model_dir, capsys=capsys)
    assert code == 2 and "not both" in err


def _png(path: Path) -> bytes:
    return path.read_bytes()


@pytest.mark.parametrize("layout", ["binary", "huggingface"])
def test_parquet_catalogue_with_image_bytes(layout, model_dir, tmp_path):
    """Images held in a Parquet column (several row groups) give the answers their files
    give; a null and a non-image get their rows with errors."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    files = write_images(tmp_path / "files", 7)
    blobs: list[bytes | None] = [_png(p) for p in files]
    blobs[2], blobs[5] = None, b"this is not an image at all"
    names = [p.name for p in files]
    if layout == "binary":
        column = pa.array(blobs, type=pa.binary())
    else:
        column = pa.array([None if b is None else {"bytes": b, "path": n}
                           for b, n in zip(blobs, names)],
                          type=pa.struct([("bytes", pa.binary()), ("path", pa.string())]))
    table = pa.table({"objid": pa.array([OBJID0 + i for i in range(7)], pa.int64()),
                      "image": column})
    catalogue = tmp_path / "cutouts.parquet"
    pq.write_table(table, catalogue, row_group_size=3)

    out, direct = tmp_path / "bytes.csv", tmp_path / "files.csv"
    code, _, _ = predict("--catalogue", catalogue, "--bytes-column", "image", "--id-columns",
                         "objid", "--model", model_dir, "-o", out, "--batch-size", 3,
                         "--workers", 0)
    assert code == 1
    assert predict(*files, "--model", model_dir, "-o", direct, "--batch-size", 3,
                   "--workers", 0)[0] == 0
    rows, expected = rows_of(out), rows_of(direct)
    assert [r["objid"] for r in rows] == [str(OBJID0 + i) for i in range(7)]
    assert "no image bytes" in rows[2]["error"] and "catalogue row 3" in rows[2]["error"]
    assert rows[5]["error"] and rows[5]["label"] == ""
    for i in (0, 1, 3, 4, 6):
        assert rows[i]["path"] == (names[i] if layout == "huggingface" else f"row {i + 1}")
        for key in ("label", "p_spiral", "p_elliptical", "ood_score", "survey_matched"):
            assert rows[i][key] == expected[i][key], (i, key)


def test_bytes_column_of_text_is_refused(model_dir, tmp_path, capsys):
    import pyarrow as pa
    import pyarrow.parquet as pq

    catalogue = tmp_path / "c.parquet"
    pq.write_table(pa.table({"image": ["a.png", "b.png"]}), catalogue)
    code, _, err = predict("--catalogue", catalogue, "--bytes-column", "image", "--model",
                           model_dir, capsys=capsys)
    assert code == 2 and "not image bytes" in err


# --- inputs -------------------------------------------------------------------------------------
def test_lazy_walk_finds_what_the_list_finds(images, tmp_path):
    from galaxy_core.predict.inputs import find_inputs, iter_inputs

    nested = tmp_path / "tree"
    shutil.copytree(images, nested / "a")
    shutil.copytree(images, nested / "a" / "b")
    (nested / "a.png").write_bytes(b"x")
    walked = list(iter_inputs([nested]))
    assert sorted(map(str, (e.path for e in walked))) == \
        sorted(map(str, (e.path for e in find_inputs([nested]))))
    assert walked == list(iter_inputs([nested]))  # the same order every time (resume needs it)

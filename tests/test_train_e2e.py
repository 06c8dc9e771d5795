"""A tiny end-to-end run on synthetic galaxies: prepare -> train -> release -> interrupt ->
resume -> evaluate -> predict, through the same functions and CLI users run."""

from __future__ import annotations

import csv
import io
import json

import pytest

from galaxy_core.cli import main
from galaxy_core.config import Config
from galaxy_core.data.prepare import PrepareRequest, prepare
from galaxy_core.evaluate.report import load_report, validation_threshold
from galaxy_core.model.store import load_model
from galaxy_core.model.ood import WARN_AT
from galaxy_core.release.finalize import finalize_run
from galaxy_core.train.checkpoint import INFO_KEY
from galaxy_core.train.loop import TrainResult, train
from galaxy_core.train.run_folder import CHECKPOINT_STATE_FILE, read_history
from tests.conftest import draw_galaxy, write_gz1_fixture

pytestmark = pytest.mark.slow

CONFIG = Config(arch="resnet18", image_size=32, epochs=3, batch_size=8, lr=1e-3, warmup_epochs=0,
                val_fraction=0.25, test_fraction=0.25, patience=10, tta=True)


@pytest.fixture(scope="module")
def prepared_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("e2e")
    paths = write_gz1_fixture(root / "src", n_per_class=14, size=48)
    prepare(PrepareRequest(images=paths["images_gz1"], out=root / "prepared",
                           labels=paths["leaf"]), CONFIG)
    return root / "prepared"


def train_and_release(prepared_dir, run_dir, config: Config, **kwargs) -> TrainResult:
    """What ``galaxy train`` does: the loop, then the release step writes ``RUN/model``."""
    result = train(prepared_dir, run_dir, config, **kwargs)
    assert json.loads((result.run_dir / "status.json").read_text())["state"] == "trained"
    assert not (result.run_dir / "model").exists()  # the loop leaves the release to its caller
    result.model_dir = finalize_run(result.run_dir, result.state)
    return result


def checkpoint_info(run_dir) -> dict:
    """The bookkeeping (epoch, best loss, early-stopping count) stored inside the checkpoint."""
    from safetensors import safe_open

    with safe_open(str(run_dir / CHECKPOINT_STATE_FILE), framework="pt") as handle:
        return json.loads(handle.metadata()[INFO_KEY])


def rewrite_checkpoint_info(run_dir, **changes) -> None:
    from safetensors.torch import load_file, save_file

    path = run_dir / CHECKPOINT_STATE_FILE
    info = {**checkpoint_info(run_dir), **changes}
    save_file(load_file(str(path)), str(path), metadata={INFO_KEY: json.dumps(info)})


@pytest.fixture(scope="module")
def finished_run(prepared_dir, tmp_path_factory):
    run = tmp_path_factory.mktemp("runs") / "full"
    return train_and_release(prepared_dir, run, CONFIG)


def test_training_writes_log_checkpoint_and_model(finished_run):
    result = finished_run
    assert result.state == "finished"
    assert [r["epoch"] for r in result.history] == [1, 2, 3]
    assert [r["epoch"] for r in read_history(result.run_dir)] == [1, 2, 3]
    for key in ("train_loss", "val_loss", "val_accuracy", "val_macro_f1", "lr", "seconds"):
        assert key in result.history[0]
    for row in result.history:  # the speed is the training steps', validation left out
        assert 0 <= row["train_seconds"] <= row["seconds"]
        assert row["images_per_second"] > 0
    assert (result.run_dir / "checkpoint.safetensors").is_file()
    assert result.model_dir == result.run_dir / "model"
    loaded = load_model(result.model_dir)
    assert loaded.temperature > 0
    assert len(loaded.meta["logit_bias"]) == 2
    assert loaded.meta["training"]["n_train"] > 0
    assert (result.model_dir / "report_test" / "report.json").is_file()
    assert (result.model_dir / "ood.safetensors").is_file()
    card = (result.model_dir / "MODEL_CARD.md").read_text()
    acc = loaded.meta["metrics"]["test"]["accuracy"]
    assert f"| accuracy | {100 * acc:.1f}%" in card
    assert "leaf classes" in card and "confident Galaxy Zoo 1 labels" not in card
    assert "`report_test/coverage.png`" in card
    report = load_report(result.model_dir / "report_test")
    hits = [h for h in report["selective"]["at_accuracy"].values() if h]
    assert ("## Accepting only confident answers" in card) == bool(hits)
    for hit in hits:
        assert f"which keeps {100 * hit['coverage']:.1f}% of galaxies" in card
    status = json.loads((result.run_dir / "status.json").read_text())
    assert status["state"] == "finished"


def test_capped_run_records_the_galaxies_it_learned_from(prepared_dir, tmp_path):
    """--max-train-images runs (learning curves) must say how many galaxies they really used."""
    result = train_and_release(prepared_dir, tmp_path / "capped",
                               CONFIG.replace(epochs=1, max_train_images=6))
    training = load_model(result.model_dir).meta["training"]
    assert training["n_train"] == 6 < _whole_train_part_size(prepared_dir)
    assert "6 train /" in (result.model_dir / "MODEL_CARD.md").read_text()


def _whole_train_part_size(prepared_dir) -> int:
    from galaxy_core.data.cache import load_framed_part
    from galaxy_core.data.prepared import open_prepared

    return len(load_framed_part(open_prepared(prepared_dir), CONFIG, 0, "train"))


def test_interrupt_then_resume_continues_where_it_stopped(prepared_dir, finished_run, tmp_path):
    run = tmp_path / "interrupted"
    calls = {"n": 0}

    def stop_in_epoch_2(done, total, info):
        calls["n"] += 1
        if info["epoch"] == 2:
            raise KeyboardInterrupt

    first = train(prepared_dir, run, CONFIG, on_step=stop_in_epoch_2)
    assert first.state == "interrupted"
    assert [r["epoch"] for r in read_history(run)] == [1]
    resumed = train(prepared_dir, run, CONFIG, resume=True)
    assert resumed.state == "finished"
    assert [r["epoch"] for r in resumed.history] == [1, 2, 3]
    # Same seed, same data order and RNG restored: the resumed run retraces the uninterrupted one.
    for a, b in zip(resumed.history, finished_run.history):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-3, abs=1e-4)


def test_cli_evaluate_and_predict(prepared_dir, finished_run, tmp_path, capsys):
    model_dir = finished_run.model_dir
    assert main(["evaluate", "--model", str(model_dir), "--data", str(prepared_dir),
                 "--out", str(tmp_path / "report")]) == 0
    out = capsys.readouterr().out
    assert "macro-F1" in out and "ECE" in out
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    assert report["calibrated"]["metrics"]["n"] == report["n"]

    images = tmp_path / "inputs"
    images.mkdir()
    draw_galaxy("spiral", 64, 1).save(images / "spiral.png")
    draw_galaxy("elliptical", 64, 2).save(images / "elliptical.jpg")
    (images / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    (images / "notes.txt").write_text("not an image")  # reported as skipped, not as a failure
    csv_path = tmp_path / "pred.csv"
    code = main(["predict", str(images), "--model", str(model_dir), "--output", str(csv_path)])
    assert code == 1  # one file could not be classified
    assert "1 of 4 input(s) could not be classified" in capsys.readouterr().err
    rows = list(csv.DictReader(io.StringIO(csv_path.read_text())))
    assert [r["path"].rsplit("/", 1)[1] for r in rows] == ["broken.jpg", "elliptical.jpg",
                                                           "notes.txt", "spiral.png"]
    broken, good, notes = rows[0], [rows[1], rows[3]], rows[2]
    assert broken["label"] == "" and broken["error"] and not broken["error"].startswith("skip")
    assert notes["label"] == "" and notes["error"].startswith("skipped: ")
    for row in good:
        assert row["label"] in {"spiral", "elliptical"} and row["error"] == ""
        assert float(row["p_spiral"]) + float(row["p_elliptical"]) == pytest.approx(1, abs=2e-4)
        assert float(row["ood_score"]) >= 0
    assert main(["predict", str(images / "spiral.png"), "--model", str(model_dir)]) == 0

    # --accept-at: the threshold comes from the validation report; failures stay blank.
    threshold = validation_threshold(model_dir, 0.5)
    val_rows = load_report(model_dir / "report_val")["predictions"]
    kept = [r for r in val_rows if max(r["p_spiral"], 1 - r["p_spiral"]) >= threshold]
    assert sum(r["true"] == r["predicted"] for r in kept) / len(kept) >= 0.5
    accepted_path = tmp_path / "pred_accepted.csv"  # an existing output is never overwritten
    assert main(["predict", str(images), "--model", str(model_dir), "--output",
                 str(accepted_path), "--accept-at", "0.5"]) == 1
    rows = list(csv.DictReader(io.StringIO(accepted_path.read_text())))
    assert rows[0]["accepted"] == rows[2]["accepted"] == ""
    for row in (rows[1], rows[3]):
        confident = max(float(row["p_spiral"]), float(row["p_elliptical"])) >= threshold - 1e-4
        expected = confident and float(row["ood_score"]) <= WARN_AT
        assert row["accepted"] == str(int(expected))
    with pytest.raises(SystemExit):
        main(["predict", str(images), "--model", str(model_dir), "--accept-at", "95"])
    import shutil

    no_val = tmp_path / "no_val_model"
    shutil.copytree(model_dir, no_val)
    shutil.rmtree(no_val / "report_val")
    capsys.readouterr()
    assert main(["predict", str(images), "--model", str(no_val), "--accept-at", "0.9"]) == 2
    assert "no validation report" in capsys.readouterr().err
    assert main(["predict", str(tmp_path / "empty_dir_that_is_missing"), "--model",
                 str(model_dir)]) == 1
    assert main(["predict", str(images), "--model", str(tmp_path / "no_model")]) == 2


def test_cli_train_stops_on_sigterm_and_resumes(prepared_dir, tmp_path):
    """A real process, stopped the way the dashboard stops it, then resumed from the CLI."""
    import os
    import signal
    import subprocess
    import sys
    import time

    run = tmp_path / "cli_run"
    cmd = [sys.executable, "-m", "galaxy_core.cli", "train", "--data", str(prepared_dir),
           "--out", str(run), "--arch", "resnet18", "--image-size", "32", "--epochs", "8",
           "--batch-size", "8"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env)
    deadline = time.time() + 240
    while not (run / CHECKPOINT_STATE_FILE).is_file() and time.time() < deadline:
        time.sleep(0.5)
    assert (run / CHECKPOINT_STATE_FILE).is_file(), \
        proc.stderr.read() if proc.poll() else "timeout"
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "--resume" in err and "Traceback" not in err
    done = checkpoint_info(run)["epoch"]
    assert 1 <= done < 8
    code = subprocess.run(cmd[:8] + ["--resume"], env=env, capture_output=True, text=True,
                          timeout=600)
    assert code.returncode == 0, code.stderr
    # the run's own settings (8 epochs, resnet18, 32 px) come back from its folder
    assert [r["epoch"] for r in read_history(run)] == list(range(1, 9))
    assert (run / "model" / "model.json").is_file()


def test_resume_of_a_run_that_never_started_trains_it(prepared_dir, tmp_path):
    """`--splits 3 --resume` after split 0 finished: splits 1 and 2 have no folder yet, and the
    CLI's 'keep the run's own' zeros for epochs and patience must not stop them at epoch 0."""
    run = tmp_path / "never_started"
    result = train_and_release(prepared_dir, run, CONFIG.replace(epochs=1, patience=0),
                               resume=True)
    assert result.state == "finished"
    assert [r["epoch"] for r in result.history] == [1]
    assert (run / "model" / "model.safetensors").is_file()


def test_resume_with_more_epochs_extends_a_stopped_run(prepared_dir, tmp_path):
    """Extending a run restarts the cosine schedule, so the epochs that did not improve before
    the extension must not count towards early stopping; a plain resume keeps counting."""
    run = tmp_path / "extend"

    def stop_in_epoch_3(done, total, info):
        if info["epoch"] == 3:
            raise KeyboardInterrupt

    first = train(prepared_dir, run, CONFIG.replace(epochs=3, patience=1), on_step=stop_in_epoch_3)
    assert first.state == "interrupted"

    def set_bad_epochs(n: int, best: float | None = None) -> None:
        # as if the last epochs had not improved
        rewrite_checkpoint_info(run, bad_epochs=n,
                                **({"best_val_loss": best} if best is not None else {}))
        assert checkpoint_info(run)["bad_epochs"] == n

    set_bad_epochs(1)
    same = train(prepared_dir, run, CONFIG.replace(epochs=0, patience=0), resume=True)
    assert same.state == "early_stopped" and len(same.history) == 2
    assert finalize_run(run, same.state) == run / "model"  # the release step, run afterwards
    assert json.loads((run / "status.json").read_text())["state"] == "early_stopped"

    # An old best that the new segment cannot beat: early stopping must judge the new segment
    # on its own, while the shipped weights stay the best ones seen.
    set_bad_epochs(2, best=0.0)
    longer = train(prepared_dir, run, CONFIG.replace(epochs=5, patience=2), resume=True)
    assert longer.state == "finished"
    assert [r["epoch"] for r in longer.history] == [1, 2, 3, 4, 5]
    assert not any(r.get("best") for r in longer.history[2:])
    stored = json.loads((run / "config.json").read_text())
    assert stored["epochs"] == 5 and stored["patience"] == 2
    # epoch 3 ran on the stretched schedule: mid-way, not at the 1% floor of the old one's end
    assert longer.history[2]["lr"] > 0.2 * CONFIG.lr


def test_export_ships_fp16_weights_and_remeasures(prepared_dir, finished_run, tmp_path, capsys):
    target = tmp_path / "shipped"
    assert main(["export", str(finished_run.model_dir), "--out", str(target),
                 "--data", str(prepared_dir)]) == 0
    assert "test accuracy" in capsys.readouterr().out
    source, shipped = load_model(finished_run.model_dir), load_model(target)
    assert shipped.meta["weights_dtype"] == "float16"
    assert (target / "model.safetensors").stat().st_size < \
        0.6 * (finished_run.model_dir / "model.safetensors").stat().st_size
    assert shipped.temperature == source.temperature
    assert shipped.meta["logit_bias"] == source.meta["logit_bias"]
    # the OOD reference is fitted again on the shipped weights, by the current method
    assert (target / "ood.safetensors").is_file()
    assert shipped.meta["ood"]["method"] == source.meta["ood"]["method"]
    assert shipped.meta["ood"]["scale"] == pytest.approx(source.meta["ood"]["scale"], rel=0.05)
    for part in ("val", "test"):
        report = json.loads((target / f"report_{part}" / "report.json").read_text())
        assert report["model"] == str(target)
        assert report["n"] == source.meta["training"][f"n_{part}"]
    test_report = json.loads((target / "report_test" / "report.json").read_text())
    assert shipped.meta["metrics"]["test"]["accuracy"] == \
        test_report["calibrated"]["metrics"]["accuracy"]
    assert f"{100 * shipped.meta['metrics']['test']['accuracy']:.1f}%" in \
        (target / "MODEL_CARD.md").read_text()
    assert main(["export", str(target), "--out", str(target), "--data", str(prepared_dir)]) == 2


def test_export_refits_an_old_ood_reference(prepared_dir, finished_run, tmp_path):
    """A model whose OOD reference predates the border check must not ship without it."""
    import shutil

    old = tmp_path / "old_model"
    shutil.copytree(finished_run.model_dir, old)
    meta = json.loads((old / "model.json").read_text())
    meta["ood"] = {"method": "mahalanobis-pca", "components": 4, "scale": 1.0, "warn_at": 1.0}
    (old / "model.json").write_text(json.dumps(meta))
    (old / "ood.safetensors").unlink()
    target = tmp_path / "new_model"
    assert main(["export", str(old), "--out", str(target), "--data", str(prepared_dir)]) == 0
    shipped = load_model(target)
    assert "border" in shipped.meta["ood"]["method"] and shipped.meta["ood"]["border_scale"] > 0
    # each measure is scaled by its own validation 99th percentile; the score is their maximum
    assert 0.99 <= shipped.meta["ood"]["val_score_percentiles"]["99"] <= 1.5
    assert (target / "ood.safetensors").is_file()


def test_export_attaches_the_spread_over_splits(prepared_dir, finished_run, tmp_path, capsys):
    """--stability copies a --splits run's summary and the recipe behind it into the card."""
    import shutil

    from galaxy_core.cli import _write_split_summary

    splits_run = tmp_path / "splits"
    for k in (0, 1):  # two 'splits' that are the same finished run: the spread must be 0
        (splits_run / f"split_{k}").mkdir(parents=True)
        shutil.copy(finished_run.run_dir / "config.json", splits_run / f"split_{k}")
    summary = _write_split_summary(splits_run, [finished_run.model_dir] * 2)
    target = tmp_path / "with_stability"
    assert main(["export", str(finished_run.model_dir), "--out", str(target), "--data",
                 str(prepared_dir), "--stability", str(splits_run)]) == 0
    shipped = load_model(target)
    test_report = json.loads((finished_run.model_dir / "report_test" / "report.json").read_text())
    assert shipped.meta["splits"]["accuracy"]["mean"] == pytest.approx(
        test_report["calibrated"]["metrics"]["accuracy"])
    assert shipped.meta["splits"]["accuracy"]["std"] == 0
    assert shipped.meta["splits"] == summary
    assert shipped.meta["splits_recipe"]["arch"] == CONFIG.arch
    card = (target / "MODEL_CARD.md").read_text()
    assert "## Stability across splits" in card and f"`{CONFIG.arch}` from scratch" in card
    acc, n = summary["accuracy"]["mean"], shipped.meta["metrics"]["test"]["n"]
    se = 100 * (acc * (1 - acc) / n) ** 0.5
    assert f"one test split of {n} galaxies" in card
    assert f"binomial standard error of {se:.1f} points" in card
    capsys.readouterr()
    assert main(["export", str(finished_run.model_dir), "--out", str(tmp_path / "no"),
                 "--data", str(prepared_dir), "--stability", str(tmp_path)]) == 2
    assert "splits_summary.json" in capsys.readouterr().err


def test_model_card_says_where_a_run_was_extended():
    from galaxy_core.release.model_card import _restarts

    rates = [1e-3, 2e-3, 1e-3, 2e-5, 1.6e-3, 8e-4, 2e-5]  # warm-up, decay, extension, decay
    history = [{"epoch": i + 1, "lr": lr} for i, lr in enumerate(rates)]
    assert "after epoch 4 " in _restarts(history, warmup=1)
    assert _restarts(history[:4], warmup=1) == ""


def test_model_card_names_the_label_source_and_its_limit(finished_run, tmp_path):
    """Leaf classes (no vote threshold) get the line on what caps accuracy; a model trained on
    the catalogue's 80% consensus is called confident and does not get it."""
    import shutil

    from galaxy_core.release.model_card import render_model_card

    leaf_card = render_model_card(finished_run.model_dir)
    assert "Leaf classes carry no vote threshold" in leaf_card
    assert "could classify confidently" not in leaf_card
    folder = tmp_path / "catalogue_model"
    shutil.copytree(finished_run.model_dir, folder)
    meta = json.loads((folder / "model.json").read_text())
    meta["training"]["source"] = "Galaxy Zoo 1 table GalaxyZoo1_DR_table2.csv (debiased p >= 0.8)"
    (folder / "model.json").write_text(json.dumps(meta))
    card = render_model_card(folder)
    assert "confident Galaxy Zoo 1 labels" in card
    assert "Leaf classes carry no vote threshold" not in card

"""The dashboard against hostile or heavy use (issue 13): crafted report files on the Failures
page, large uploads on the Classify page, and visitors starting training runs.

The app is driven with ``streamlit.testing.v1.AppTest`` and the tiny synthetic model of
tests/test_app.py; everything else is drawn here.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import threading
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from galaxy_core.evaluate.report import REPORT_FILE
from galaxy_core.model.store import report_dir
from galaxy_core.train import run_folder
from tests.conftest import draw_galaxy
from tests.test_app import app, assets, navigation_only, png_bytes, set_env, texts  # noqa: F401

DEAD_PID = 2**22 + 12345


@pytest.fixture
def env(assets, tmp_path, monkeypatch, navigation_only):  # noqa: F811
    return set_env(monkeypatch, assets, tmp_path)


# --- item 16: the Failures page reads images only inside the data folders ----------------------
SECRET = "secret.png"


@pytest.fixture
def crafted(env, assets, tmp_path, monkeypatch):
    """A data root whose gz1_sdss/images holds one real galaxy and a symbolic link leading out,
    an outside folder holding a readable galaxy picture (what must never be shown), a copy of
    the tiny model whose test report the tests rewrite, and a record of every file the page
    asks the image loader for."""
    import dashboard.explain

    images = tmp_path / "data" / "gz1_sdss" / "images"
    images.mkdir(parents=True)
    shutil.copy(assets["images"] / "spirals" / "g001.png", images / "good.png")
    outside = tmp_path / "outside"
    outside.mkdir()
    draw_galaxy("spiral", 64, seed=7).save(outside / SECRET)
    (images / "link.png").symlink_to(outside / SECRET)
    model = tmp_path / "crafted_model"
    shutil.copytree(assets["model"], model)
    monkeypatch.setenv("GALAXY_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("GALAXY_MODEL_DIR", str(model))
    opened: list[Path] = []
    real = dashboard.explain.load_image

    def spy(path):
        opened.append(Path(path))
        return real(path)

    monkeypatch.setattr(dashboard.explain, "load_image", spy)
    dashboard.explain.catalogue_input.clear()
    return {"images": images, "outside": outside, "model": model, "opened": opened}


def write_report(model: Path, image_dir: str, names: list[str]) -> None:
    path = report_dir(model, "test") / REPORT_FILE
    report = json.loads(path.read_text())
    report["image_dir"] = image_dir
    report["confident_failures"] = [
        {"objid": f"9{i:03d}", "image": name, "true": "spiral", "predicted": "elliptical",
         "p_elliptical": 0.9, "p_spiral": 0.1, "confidence": 0.9}
        for i, name in enumerate(names)]
    path.write_text(json.dumps(report))


CRAFTED_ROWS = [
    # (case, image name in the report, report image_dir: "images", "outside" or a path)
    ("dot-dot to a readable picture", f"../../../outside/{SECRET}", "images"),
    ("dot-dot to /etc/passwd", "../../../../../../../../../../etc/passwd", "images"),
    ("absolute path", "OUTSIDE_ABSOLUTE", "images"),
    ("absolute /etc/passwd", "/etc/passwd", "images"),
    ("symbolic link leading out", "link.png", "images"),
    ("not a string", 12345, "images"),
    ("image_dir pointing at /etc", "passwd", "/etc"),
    ("image_dir pointing at another folder", SECRET, "outside"),
]


@pytest.mark.parametrize("case,name,image_dir", CRAFTED_ROWS, ids=[c[0] for c in CRAFTED_ROWS])
def test_failures_page_refuses_report_paths_outside_the_data(crafted, case, name, image_dir):
    if name == "OUTSIDE_ABSOLUTE":
        name = str(crafted["outside"] / SECRET)
    folder = {"images": str(crafted["images"]), "outside": str(crafted["outside"])}.get(
        image_dir, image_dir)
    write_report(crafted["model"], folder, [name, "good.png"])
    at = app("pages/failures.py")
    assert not at.exception, [e.value for e in at.exception]
    root = crafted["images"].resolve()
    outside = [p for p in crafted["opened"] if not p.resolve().is_relative_to(root)]
    assert not outside, f"{case}: the page read {outside}"
    shown = texts(at)
    assert "root:" not in shown and "Traceback" not in shown
    messages = [m.value for m in (*at.error, *at.warning)]
    refusals = [m for m in messages if "refused" in m]
    assert refusals, f"{case}: no refusal among {messages}"
    assert all("\n" not in m for m in refusals), "one line each"
    if image_dir == "images":  # the crafted card refuses, the good one still shows its galaxy
        assert len(at.image) == 1
        assert any("points outside" in m or "not a file name" in m for m in refusals)
    else:  # the report's folder is refused as a whole; the configured images are used
        assert any("image folder" in m for m in refusals)
        assert len(at.image) == 1


def test_report_image_resolves_inside_and_refuses_the_rest(tmp_path):
    from dashboard.paths import report_image
    from galaxy_core.errors import GalaxyError

    root = tmp_path / "images"
    (root / "spirals").mkdir(parents=True)
    (root / "spirals" / "a.png").write_bytes(b"x")
    (tmp_path / "x.png").write_bytes(b"x")
    (root / "out.png").symlink_to(tmp_path / "x.png")
    (root / "in.png").symlink_to(root / "spirals" / "a.png")
    assert report_image(root, "spirals/a.png") == (root / "spirals" / "a.png").resolve()
    assert report_image(root, "in.png") == (root / "spirals" / "a.png").resolve()
    assert report_image(root, "spirals/../spirals/a.png").name == "a.png"
    for name in ("../x.png", str(tmp_path / "x.png"), "out.png", "", None, 3, ["a"],
                 "a\0b.png", "spirals/../../x.png"):
        with pytest.raises(GalaxyError, match="refused"):
            report_image(root, name)


# --- item 17: large uploads ------------------------------------------------------------------------
def galaxy_plane(side: int, seed: int = 0) -> np.ndarray:
    """SYNTHETIC float32 frame: an exponential blob on a noisy sky, one NaN pixel."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:side, 0:side].astype(np.float32) + 0.5
    r = np.hypot(x - side / 2, (y - side / 2) / 0.7)
    plane = 1000 * np.exp(-r / (side / 30)) + 10 + rng.normal(0, 2, (side, side))
    plane = plane.astype(np.float32)
    plane[3, 3] = np.nan
    return plane


def fits_bytes(data: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    fits.writeto(buffer, data)
    return buffer.getvalue()


def test_large_fits_streams_in_bounded_memory_and_frames_like_the_whole_decode(monkeypatch):
    """A FITS above the streaming threshold (2400x2400 float32, 22 MiB) is read in blocks of
    rows and block-averaged while read: a fraction of the memory of the whole decode, and the
    model's framing of it equals the framing of the full-resolution decode within rounding."""
    from galaxy_core.config import Config
    from galaxy_core.data import imageio
    from galaxy_core.data.preprocess import frame_for_model

    data = fits_bytes(galaxy_plane(2400))
    assert len(data) > imageio.FITS_STREAM_BYTES
    tracemalloc.start()
    try:
        streamed = imageio.read_image(data, name="big.fits")
        _, streamed_peak = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        monkeypatch.setattr(imageio, "FITS_STREAM_BYTES", 10**12)  # force the whole decode
        whole = imageio.read_image(data, name="big.fits")
        _, whole_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert streamed.image.size == (1200, 1200) and whole.image.size == (2400, 2400)
    assert streamed.original_size == whole.original_size == (2400, 2400)
    assert any("2x2 pixel blocks" in n for n in streamed.notes)
    assert "1 NaN/infinite pixels set to 0" in streamed.notes
    assert streamed_peak < 2.5 * len(data) and streamed_peak < whole_peak / 4, \
        (streamed_peak, whole_peak)
    for size in (64, 96):  # the model's input, 4x smaller or more than the cropped picture
        config = Config(image_size=size)
        diff = np.abs(frame_for_model(streamed.image, config).astype(int)
                      - frame_for_model(whole.image, config).astype(int))
        assert diff.max() <= 2 and diff.mean() < 0.5, (size, diff.max(), diff.mean())
    # 224 px from a 480 px crop: the sky noise is resampled differently, still about a level
    diff = np.abs(frame_for_model(streamed.image, Config(image_size=224)).astype(int)
                  - frame_for_model(whole.image, Config(image_size=224)).astype(int))
    assert diff.mean() < 1.0 and np.percentile(diff, 99) <= 3


@pytest.mark.parametrize("layout", ["3 planes", "1x1xHxW", "16-bit scaled"])
def test_streamed_fits_matches_the_whole_decode_for_other_layouts(monkeypatch, layout):
    """Colour cubes, degenerate leading axes and BZERO-scaled integers stream the same way
    (threshold lowered so small files take the streamed path; no downsampling then)."""
    from galaxy_core.data import imageio

    plane = galaxy_plane(300, seed=2)
    if layout == "3 planes":
        data = fits_bytes(np.stack([plane, plane * 0.8, plane * 1.2]))
    elif layout == "1x1xHxW":
        data = fits_bytes(plane[None, None])
    else:
        hdu = fits.PrimaryHDU(np.nan_to_num(plane).astype(np.uint16))
        buffer = io.BytesIO()
        hdu.writeto(buffer)
        data = buffer.getvalue()
    whole = imageio.read_image(data)
    monkeypatch.setattr(imageio, "FITS_STREAM_BYTES", 1000)
    streamed = imageio.read_image(data)
    assert streamed.image.size == whole.image.size
    diff = np.abs(np.asarray(streamed.image, int) - np.asarray(whole.image, int))
    assert diff.max() <= 1
    assert streamed.notes == whole.notes


@pytest.mark.filterwarnings("ignore:File may have been truncated")
def test_truncated_large_fits_is_one_line(monkeypatch):
    from galaxy_core.data import imageio
    from galaxy_core.errors import ImageLoadError

    monkeypatch.setattr(imageio, "FITS_STREAM_BYTES", 1000)
    data = fits_bytes(galaxy_plane(200))
    with pytest.raises(ImageLoadError, match="truncated"):
        imageio.read_image(data[:len(data) // 2], name="cut.fits")


def test_large_decodes_wait_for_the_one_slot():
    """Four large decodes at once: one runs, the others wait (and are told so), all finish."""
    from dashboard import uploads

    slots = threading.BoundedSemaphore(1)
    running, most, waited, lock = [0], [0], set(), threading.Lock()

    def decode(i: int) -> None:
        with uploads.decode_slot(lambda ahead: waited.add(i), slots=slots):
            with lock:
                running[0] += 1
                most[0] = max(most[0], running[0])
            time.sleep(0.3)
            with lock:
                running[0] -= 1

    threads = [threading.Thread(target=decode, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert most[0] == 1
    assert len(waited) == 3
    assert slots.acquire(blocking=False), "the slot is free again"
    assert uploads.waiting() == 0


def test_the_slot_is_freed_when_the_decode_fails():
    from dashboard import uploads

    slots = threading.BoundedSemaphore(1)
    with pytest.raises(RuntimeError):
        with uploads.decode_slot(slots=slots):
            raise RuntimeError("boom")
    assert slots.acquire(blocking=False)


def test_freed_memory_is_given_back_at_most_every_interval(monkeypatch):
    """malloc_trim runs now, or once at the end of the interval for any calls inside it."""
    from dashboard import memory

    calls: list[float] = []
    monkeypatch.setattr(memory, "_trim", lambda pad: calls.append(time.monotonic()))
    monkeypatch.setattr(memory, "MIN_INTERVAL", 0.3)
    monkeypatch.setattr(memory, "_last", float("-inf"))
    assert memory.give_back() is True
    assert memory.give_back() is False and memory.give_back() is False
    assert len(calls) == 1
    time.sleep(0.6)
    assert len(calls) == 2, "the calls inside the interval ran once, at its end"
    assert calls[1] - calls[0] >= 0.25
    assert memory.give_back(force=True) is True and len(calls) == 3


def _probability(at) -> str:
    """The answer's headline (class and confidence), as the Classify page draws it."""
    return [m.value for m in at.main.markdown if m.value.startswith("### :")][0]


def test_large_upload_is_framed_queued_and_released(env, monkeypatch):
    """With the size limit lowered, an upload takes the large path: it waits while another
    session holds the slot (and says it is queued), its bytes in Streamlit's upload store are
    replaced by an empty record, the session keeps only the framed PNG, and the answer is the
    one the normal path gives."""
    from dashboard import uploads

    data = png_bytes(draw_galaxy("spiral", 120))
    at = app()
    at.file_uploader[0].upload("spiral.png", data, "image/png").run()
    normal = _probability(at)

    monkeypatch.setattr(uploads, "LARGE_UPLOAD_BYTES", 1000)
    monkeypatch.setattr(uploads, "WAIT_STEP", 0.05)
    calls: list[int] = []
    real_slot = uploads.decode_slot

    def watched_slot(on_wait=None, slots=None):
        def counting(ahead):
            calls.append(ahead)
            on_wait(ahead)
        return real_slot(counting, slots)

    monkeypatch.setattr(uploads, "decode_slot", watched_slot)
    uploads._SLOTS.acquire()  # another session is decoding
    threading.Timer(1.0, uploads._SLOTS.release).start()
    at = app()
    at.file_uploader[0].upload("spiral.png", data, "image/png").run()
    assert not at.exception, [e.value for e in at.exception]
    assert calls and calls[0] >= 1, "the page waited in the queue"
    assert _probability(at) == normal
    framed = at.session_state["framed_uploads"]
    assert len(framed) == 1
    copy = next(iter(framed.values()))
    assert copy.png and not copy.error and copy.original_size == (120, 120)
    assert at.file_uploader[0].value, "the file stays listed in the widget"
    held = [v for k in ("classify_preds", "framed_uploads", "classify_views")
            for v in _bytes_in(at.session_state[k] if k in at.session_state else None)]
    assert data not in held
    assert uploads._SLOTS.acquire(blocking=False)
    uploads._SLOTS.release()
    at.segmented_control[0].set_value("off").run()  # re-classified from the framed copy
    assert not at.exception and _probability(at)


def _bytes_in(value) -> list[bytes]:
    if isinstance(value, bytes):
        return [value]
    if isinstance(value, dict):
        return [b for v in value.values() for b in _bytes_in(v)]
    if isinstance(value, (list, tuple)):
        return [b for v in value for b in _bytes_in(v)]
    if hasattr(value, "__dict__"):
        return _bytes_in(vars(value))
    return []


def test_large_upload_that_cannot_be_read_is_one_line(env, monkeypatch):
    from dashboard import uploads

    monkeypatch.setattr(uploads, "LARGE_UPLOAD_BYTES", 10)
    at = app()
    at.file_uploader[0].upload("notes.fits", b"this is plainly not an image", "image/fits")
    at.run()
    assert not at.exception
    errors = [e.value for e in at.error]
    assert len(errors) == 1 and "notes.fits" in errors[0] and "\n" not in errors[0]


def test_release_gives_the_bytes_back_to_the_upload_store(monkeypatch):
    """The store keeps the file's record (the widget still lists it) with empty data."""
    from types import SimpleNamespace

    import streamlit.runtime.scriptrunner as scriptrunner
    from streamlit.runtime.memory_uploaded_file_manager import MemoryUploadedFileManager
    from streamlit.runtime.uploaded_file_manager import UploadedFileRec

    from dashboard import uploads

    store = MemoryUploadedFileManager("/upload")
    store.add_file("s1", UploadedFileRec("f1", "big.fits", "image/fits", b"x" * 5000))
    store.add_file("s1", UploadedFileRec("f2", "other.fits", "image/fits", b"y" * 10))
    ctx = SimpleNamespace(session_id="s1", uploaded_file_mgr=store)
    monkeypatch.setattr(scriptrunner, "get_script_run_ctx", lambda: ctx)
    upload = SimpleNamespace(file_id="f1", name="big.fits", type="image/fits")
    assert uploads.release(upload)
    assert [r.data for r in store.get_files("s1", ["f1", "f2"])] == [b"", b"y" * 10]
    assert not uploads.release(SimpleNamespace(file_id="gone", name="x", type="y"))
    assert [r.file_id for r in store.get_files("s1", ["f1", "f2", "gone"])] == ["f1", "f2"]


def test_streamlit_upload_store_interface_is_still_there():
    """dashboard.uploads.release uses the server's upload store (MemoryUploadedFileManager:
    add_file, get_files), UploadedFileRec and the script context's session_id and
    uploaded_file_mgr. If Streamlit changes them, uploads stay in memory until the session ends
    (release logs a warning and changes nothing): this fails first, with the reason."""
    import inspect

    from streamlit.runtime.memory_uploaded_file_manager import MemoryUploadedFileManager
    from streamlit.runtime.scriptrunner_utils.script_run_context import ScriptRunContext
    from streamlit.runtime.uploaded_file_manager import UploadedFileRec
    from streamlit.web.server import server

    assert UploadedFileRec._fields == ("file_id", "name", "type", "data")
    assert callable(MemoryUploadedFileManager.add_file)
    assert callable(MemoryUploadedFileManager.get_files)
    assert "MemoryUploadedFileManager(" in inspect.getsource(server)
    fields = set(inspect.signature(ScriptRunContext).parameters)
    assert {"session_id", "uploaded_file_mgr"} <= fields


# --- item 18: training runs ------------------------------------------------------------------------
def make_run(runs: Path, name: str, state: str, pid: int | None, **extra) -> Path:
    folder = runs / name
    folder.mkdir(parents=True, exist_ok=True)
    (folder / run_folder.STATUS_FILE).write_text(json.dumps(
        {"state": state, "pid": pid, "epoch": 2, "epochs": 5, **extra}))
    return folder


@pytest.fixture
def launches(monkeypatch):
    """training._launch replaced: records the call and writes a launch record whose pid is this
    (alive) process, as a real start would, without starting anything."""
    from dashboard import training

    calls: list[str] = []

    def fake_launch(prepared, run_dir, settings, resume):
        calls.append(run_dir.name)
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / run_folder.LAUNCH_FILE).write_text(json.dumps(
            {"state": "starting", "pid": os.getpid(), "epochs": 1}))
        return os.getpid()

    monkeypatch.setattr(training, "_launch", fake_launch)
    return calls


def start_button(at):
    return [b for b in at.get("form_submit_button") if "Start" in b.label][0]


LIMITS = [  # (GALAXY_MAX_TRAINING_RUNS, runs alive, may start)
    (None, 0, True), (None, 1, False), ("1", 1, False), ("2", 1, True), ("2", 2, False),
    ("0", 1, False), ("many", 1, False),
]


@pytest.mark.parametrize("limit,alive,allowed", LIMITS)
def test_start_is_refused_while_the_limit_of_runs_is_alive(env, monkeypatch, launches, limit,
                                                          alive, allowed):
    from dashboard import training
    from galaxy_core.errors import GalaxyError

    runs = env["GALAXY_RUNS_DIR"]
    if limit is None:
        monkeypatch.delenv("GALAXY_MAX_TRAINING_RUNS", raising=False)
    else:
        monkeypatch.setenv("GALAXY_MAX_TRAINING_RUNS", limit)
    for i in range(alive):
        make_run(runs, f"busy{i}", "training", os.getpid())
    make_run(runs, "dead", "training", DEAD_PID)  # a dead process does not count
    at = app("pages/train.py")
    assert not at.exception
    assert start_button(at).disabled != allowed
    if alive == 1 and not allowed:
        assert "A training run is already going: busy0; wait for it or stop it." in \
            [w.value for w in at.warning]
    if allowed:
        at.text_input(key="train_name").set_value("new")
        start_button(at).click().run()
        assert not at.exception
        assert launches == ["new"]
    else:  # the button is disabled; a start that gets through anyway is refused by the server
        with pytest.raises(GalaxyError, match="already going"):
            training.start(env["GALAXY_PREPARED"], runs / "new", {"epochs": 1})
        assert launches == [] and not (runs / "new").exists()


def test_two_visitors_starting_at_once_get_one_run(env, launches):
    from dashboard import training
    from galaxy_core.errors import GalaxyError

    runs = env["GALAXY_RUNS_DIR"]
    outcomes: list[str] = []
    barrier = threading.Barrier(4)

    def visitor(i: int) -> None:
        barrier.wait()
        try:
            training.start(env["GALAXY_PREPARED"], runs / f"r{i}", {"epochs": 1})
            outcomes.append("started")
        except GalaxyError as exc:
            outcomes.append(str(exc))

    threads = [threading.Thread(target=visitor, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert outcomes.count("started") == 1 and len(launches) == 1
    assert all("already going" in o for o in outcomes if o != "started")


def test_resume_waits_while_another_run_is_alive(env, launches):
    from dashboard import training
    from galaxy_core.errors import GalaxyError

    runs = env["GALAXY_RUNS_DIR"]
    make_run(runs, "busy", "training", os.getpid())
    make_run(runs, "paused", "training", DEAD_PID)
    at = app("pages/train.py")
    at.selectbox(key="watch_run").set_value("paused").run()
    assert not at.exception
    resume = at.button(key="resume_paused")
    assert resume.disabled
    assert any("Resume waits: a training run is already going: busy" in c.value
               for c in at.caption)
    with pytest.raises(GalaxyError, match="already going: busy"):
        training.resume(training.run_info(runs / "paused"))
    assert launches == []


@pytest.mark.parametrize("value", ["0", "false", "no", "off"])
def test_training_switched_off_hides_start_resume_and_stop(env, monkeypatch, launches, value):
    from dashboard import training
    from galaxy_core.errors import GalaxyError

    monkeypatch.setenv("GALAXY_ALLOW_TRAINING", value)
    runs = env["GALAXY_RUNS_DIR"]
    make_run(runs, "paused", "training", DEAD_PID)
    make_run(runs, "busy", "training", os.getpid())
    at = app("pages/train.py")
    assert not at.exception
    assert not at.get("form_submit_button"), "no start form"
    assert any("GALAXY_ALLOW_TRAINING=0" in i.value for i in at.info)
    for name in ("paused", "busy"):
        at.selectbox(key="watch_run").set_value(name).run()
        assert not at.exception
        assert not [b for b in at.button if b.label in ("Resume", "Stop")], name
    with pytest.raises(GalaxyError, match="switched off"):
        training.start(env["GALAXY_PREPARED"], runs / "new", {})
    with pytest.raises(GalaxyError, match="switched off"):
        training.stop(training.run_info(runs / "busy"))
    assert launches == []


def test_training_is_allowed_by_default(env, monkeypatch):
    monkeypatch.delenv("GALAXY_ALLOW_TRAINING", raising=False)
    at = app("pages/train.py")
    assert not at.exception
    assert not start_button(at).disabled


def test_failed_run_shows_its_error_and_can_be_resumed(env, launches):
    """galaxy_core.train.loop writes state "failed" and the reason when a write fails (a full
    disk): the page shows the reason and offers Resume, like an interrupted run."""
    from dashboard import training

    runs = env["GALAXY_RUNS_DIR"]
    error = ("disk full while writing runs/full/checkpoint.safetensors (0 MiB free there). The "
             "last finished epoch is kept: make room, then continue with the same command and "
             "--resume")
    make_run(runs, "full", "failed", DEAD_PID, error=error)
    assert training.run_info(runs / "full").can_resume
    at = app("pages/train.py")
    assert not at.exception
    states = dict(zip(at.dataframe[0].value["run"], at.dataframe[0].value["state"]))
    assert states == {"full": "failed"}
    assert any(error in e.value for e in at.error), [e.value for e in at.error]
    assert any("make room on the disk" in i.value for i in at.info)
    at.button(key="resume_full").click().run()
    assert not at.exception
    assert launches == ["full"]

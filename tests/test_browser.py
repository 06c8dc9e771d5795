"""The dashboard in a real browser: ``streamlit run`` on a free loopback port, driven by Playwright
in Debian's headless Chromium (``apt-get install chromium chromium-driver``; Playwright's own
browser downloads do not work here). Run alone with ``pytest -m browser``.

The server uses the shipped model when it exists (so the screenshots written to docs/ show the real
model; a later run overwrites them) and otherwise the tiny synthetic model of test_app.py.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from playwright.sync_api import expect

from tests.conftest import draw_galaxy
from tests.test_app import REPO, assets  # noqa: F401  (assets is a fixture)

pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")
DOCS = REPO / "docs"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
SLOW = 180_000
"""Milliseconds to wait for the first prediction: loading torch and the model, then Grad-CAM."""


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args):
    if not CHROMIUM.is_file():
        pytest.skip(f"{CHROMIUM} not found: install Debian's chromium and chromium-driver "
                    "(apt-get install -y chromium chromium-driver)")
    return {**browser_type_launch_args, "executable_path": str(CHROMIUM), "args": CHROMIUM_ARGS}


@pytest.fixture(scope="session")
def browser_context_args(browser_context_args):
    return {**browser_context_args, "viewport": {"width": 1440, "height": 1000}}


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_healthy(url: str, proc: subprocess.Popen, log: Path, timeout: float = 90) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"streamlit exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as reply:
                if reply.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise RuntimeError(f"streamlit did not answer within {timeout} s:\n{log.read_text()[-3000:]}")


QUIET = ("--server.fileWatcherType", "none", "--browser.gatherUsageStats", "false")
"""Options the test servers add: no file watcher, no usage statistics."""


@contextmanager
def streamlit_app(env: dict[str, str], log: Path,
                  options: tuple[str, ...] = ()) -> Iterator[tuple[str, subprocess.Popen]]:
    """``streamlit run app.py`` from the repository on 127.0.0.1:<free port>, with ``env`` and
    any further ``options``, its output in ``log``; yields (url, process) once it answers, and
    always stops it."""
    port = free_port()
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true",
             "--server.port", str(port), "--server.address", "127.0.0.1", *options],
            cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, proc, log)
        yield url, proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


@pytest.fixture(scope="module")
def server(assets, tmp_path_factory):  # noqa: F811
    """`streamlit run app.py` on 127.0.0.1:<free port>; always terminated at teardown."""
    from dashboard.models import is_model_dir
    from galaxy_core.locations import SHIPPED_MODEL_DIR

    if not CHROMIUM.is_file():
        pytest.skip(f"{CHROMIUM} not found: apt-get install -y chromium chromium-driver")
    tmp = tmp_path_factory.mktemp("browser")
    env = {**os.environ, "GALAXY_RUNS_DIR": str(tmp / "runs"), "PYTHONUNBUFFERED": "1"}
    shipped = is_model_dir(SHIPPED_MODEL_DIR)
    if shipped:
        env.pop("GALAXY_MODEL_DIR", None)
    else:
        env["GALAXY_MODEL_DIR"] = str(assets["model"])
        env.setdefault("GALAXY_PREPARED", str(assets["prepared"]))
    log = tmp / "streamlit.log"
    with streamlit_app(env, log, QUIET) as (url, proc):
        yield {"url": url, "shipped": shipped, "log": log, "runs": tmp / "runs", "pid": proc.pid}


@pytest.fixture
def galaxy_png(tmp_path) -> Path:
    path = tmp_path / "test_spiral.png"
    draw_galaxy("spiral", 160, seed=3).save(path)
    return path


def wait_for_app(page) -> None:
    page.wait_for_selector('[data-testid="stSidebar"]', timeout=60_000)
    page.wait_for_function("!document.querySelector('[data-testid=\"stStatusWidget\"]')",
                           timeout=SLOW)


def screenshot(page, name: str, folder: Path = DOCS, max_height: int = 2200) -> None:
    """Stable names in docs/, so a run with the shipped model overwrites the earlier ones."""
    height = page.evaluate("() => { const m = document.querySelector('[data-testid=\"stMain\"]');"
                           " return m ? m.scrollHeight : 1000; }")
    page.set_viewport_size({"width": 1440, "height": int(min(max(height, 900), max_height))})
    page.wait_for_timeout(1500)
    folder.mkdir(exist_ok=True)
    page.screenshot(path=str(folder / name))
    page.set_viewport_size({"width": 1440, "height": 1000})


HEADLINE = re.compile(r"(Spiral|Elliptical) \(confident: [\d.]+%\)|Probably (spiral|elliptical) "
                      r"\(\d+%\)|Unsure: perhaps (spiral|elliptical) \(\d+%\)|This does not look "
                      r"like a galaxy image|This may be a galaxy, but not framed like the survey "
                      r"pictures the network knows")
"""The Classify page's answer line, in every wording band of dashboard/verdict.py."""


def upload_and_wait(page, path: Path) -> str:
    """Upload one image and wait for its answer and Grad-CAM; the answer line's text."""
    page.set_input_files('[data-testid="stFileUploader"] input[type="file"]', str(path))
    answer = page.locator(".st-key-verdict h3").first
    answer.wait_for(timeout=SLOW)
    cam = page.locator('img[alt="Grad-CAM overlay"]')
    cam.wait_for(timeout=SLOW)
    page.wait_for_function(
        "() => { const i = document.querySelector('img[alt=\"Grad-CAM overlay\"]');"
        " return i && i.complete && i.naturalWidth > 0; }", timeout=SLOW)
    text = answer.inner_text()
    for icon in ("check_circle", "help", "block", "crop"):  # Material icon names, as text
        text = text.replace(icon, "")
    return text.strip()


def wait_for_maps(page) -> None:
    """The Failures page draws its cards first, then a progress bar while it computes the
    Grad-CAM maps missing from its disk cache, and removes the bar when done."""
    page.get_by_text("Each card:").wait_for(timeout=SLOW)
    page.wait_for_function(
        "!document.querySelector('[data-testid=\"stMain\"] [data-testid=\"stProgress\"]')",
        timeout=SLOW)
    wait_for_app(page)


def click_first_row(page, table) -> None:
    """Select the first row of a single-row-selection st.dataframe (a canvas grid: the row's
    check box sits in its first, narrow column, under a header row of about 35 px)."""
    table.wait_for(timeout=SLOW)
    page.wait_for_timeout(1000)
    box = table.bounding_box()
    page.mouse.click(box["x"] + 18, box["y"] + 35 + 18)


def check_galaxy_dialog(page) -> None:
    """The galaxy dialog: objid with its SkyServer link, Galaxy Zoo subclass, the full cutout."""
    dialog = page.get_by_role("dialog")
    dialog.get_by_text("SDSS objid").wait_for(timeout=SLOW)
    dialog.get_by_text("subclass").wait_for(timeout=SLOW)
    dialog.get_by_text("Full SDSS cutout", exact=False).wait_for(timeout=SLOW)
    link = dialog.get_by_role("link", name="open on SkyServer (DR16)")
    assert re.fullmatch(r"https://skyserver\.sdss\.org/dr16/en/tools/explore/summary\.aspx\?"
                        r"id=\d+", link.get_attribute("href") or "")
    dialog.locator("img").first.wait_for(timeout=SLOW)


def test_bookmarked_page_as_first_request_gets_the_sidebar(server, page):
    """The first request after the server starts is a page URL: Streamlit still runs pages/ files
    on their own then (its folder mode), and the page must reroute itself through app.py
    (dashboard.ui.require_app). Runs first in this module, so the server is fresh."""
    page.goto(f"{server['url']}/evaluate")
    wait_for_app(page)
    page.get_by_text("How good is the model?").wait_for(timeout=SLOW)
    page.get_by_text("Spiral or elliptical?").wait_for(timeout=SLOW)  # app.py's sidebar
    nav = page.locator('[data-testid="stSidebarNav"]')
    assert nav.get_by_text("Train", exact=True).count() == 1
    assert page.locator('[data-testid="stException"]').count() == 0


def test_upload_shows_class_and_gradcam(server, page, galaxy_png):
    page.goto(server["url"])
    wait_for_app(page)
    page.get_by_text("Classify a galaxy").wait_for()
    label = upload_and_wait(page, galaxy_png)
    assert HEADLINE.fullmatch(label), label
    assert page.get_by_text("Traceback").count() == 0
    assert page.locator('[data-testid="stException"]').count() == 0


def test_screenshots_of_classify_evaluate_failures(server, page, galaxy_png):
    from galaxy_core.locations import default_data_root

    real = default_data_root() / "seed_examples" / "1254.jpg"
    page.goto(server["url"])
    wait_for_app(page)
    upload_and_wait(page, real if real.is_file() else galaxy_png)
    wait_for_app(page)
    screenshot(page, "classify.png")

    page.goto(f"{server['url']}/evaluate")
    wait_for_app(page)
    page.get_by_text("Reliability", exact=True).wait_for(timeout=SLOW)
    page.locator(".js-plotly-plot").nth(2).wait_for(timeout=SLOW)
    assert page.locator('[data-testid="stException"]').count() == 0
    page.get_by_text("Accepting only confident answers").wait_for(timeout=SLOW)
    screenshot(page, "evaluate.png", max_height=3000)  # down to the confident answers
    # A row of the matrix-cell list opens the galaxy's dialog.
    page.get_by_text("List the galaxies in one cell of the matrix").click()
    click_first_row(page, page.locator('[data-testid="stExpander"] '
                                       '[data-testid="stDataFrame"]').first)
    check_galaxy_dialog(page)

    page.goto(f"{server['url']}/failures")
    wait_for_app(page)
    details = page.get_by_role("button", name=re.compile("Details"))
    details.first.wait_for(timeout=SLOW)
    wait_for_maps(page)
    assert page.locator('[data-testid="stException"]').count() == 0
    assert page.locator('img[alt^="Galaxy "]').count() == details.count()
    screenshot(page, "failures.png")
    details.first.click()
    check_galaxy_dialog(page)


def test_failures_cards_come_before_their_maps_and_the_table_opens_a_galaxy(server, page):
    """The cards (galaxy images) are drawn before any Grad-CAM is computed; a second visit
    reads every map from the disk cache beside the model's report; the table view's rows open
    the galaxy's dialog."""
    page.goto(f"{server['url']}/failures")
    wait_for_app(page)
    page.locator('[data-testid="stButtonGroup"]').filter(has_text="Most confident failures") \
        .get_by_text("All misclassified", exact=True).click()
    page.get_by_text("Each card:").wait_for(timeout=SLOW)
    wait_for_maps(page)
    started = time.time()
    page.reload()
    page.get_by_text("Each card:").wait_for(timeout=SLOW)
    wait_for_maps(page)
    assert time.time() - started < 60
    page.locator('[data-testid="stButtonGroup"]').filter(has_text="Cards") \
        .get_by_text("Table", exact=True).click()
    click_first_row(page, page.locator('[data-testid="stDataFrame"]').first)
    check_galaxy_dialog(page)
    assert page.locator('[data-testid="stException"]').count() == 0


def test_phone_shows_the_answer_first(server, browser, galaxy_png):
    """At 390 x 844 (a phone) the answer sits above the pictures and on the first screen.
    Screenshot: docs/phone.png."""
    from galaxy_core.locations import default_data_root

    real = default_data_root() / "seed_examples" / "elliptical_to_test.jpg"
    context = browser.new_context(viewport={"width": 390, "height": 844},
                                  device_scale_factor=2, is_mobile=True, has_touch=True)
    phone = context.new_page()
    try:
        phone.goto(server["url"])
        phone.wait_for_selector('[data-testid="stSidebar"]', state="attached", timeout=60_000)
        phone.get_by_text("Classify a galaxy").wait_for(timeout=SLOW)
        path = real if real.is_file() else galaxy_png
        label = upload_and_wait(phone, path)
        assert HEADLINE.fullmatch(label), label
        phone.wait_for_function(
            "!document.querySelector('[data-testid=\"stStatusWidget\"]')", timeout=SLOW)
        phone.evaluate("window.scrollTo(0, 0)")
        answer = phone.locator(".st-key-verdict").bounding_box()
        picture = phone.locator('img[alt="Model input"]').bounding_box()
        assert answer["y"] + answer["height"] <= picture["y"], "the answer comes first"
        assert answer["y"] + 60 <= 844, "the answer line is on the first screen"
        phone.wait_for_timeout(1000)
        phone.screenshot(path=str(DOCS / "phone.png"))
    finally:
        context.close()


def test_train_page_shows_each_run_state(server, page, tmp_path):
    """Runs in every state the Train page reads back from a run folder, the live one between
    training and release ("trained") included, and a run that failed (a full disk) with its
    reason and Resume. The live run is the one a server allows: starting another is refused
    with a line naming it. The screenshots go to the test's tmp folder."""
    import json

    from galaxy_core.train import run_folder

    runs = server["runs"]
    history = "".join(json.dumps({"epoch": e, "train_loss": 0.6 / e, "val_loss": 0.5 / e,
                                  "val_accuracy": 0.8 + e / 50, "val_macro_f1": 0.75 + e / 50,
                                  "seconds": 30}) + "\n" for e in (1, 2, 3))
    states = {"done": ("finished", None), "full": ("failed", 2**22 + 12346),
              "releasing": ("trained", server["pid"]), "cut": ("training", 2**22 + 12345)}
    for name, (state, pid) in states.items():
        (runs / name).mkdir(parents=True, exist_ok=True)
        status = {"state": state, "pid": pid, "epoch": 3, "epochs": 3, "step": 90,
                  "total_steps": 90}
        if state == "failed":
            status["error"] = (f"disk full while writing {runs / name}/checkpoint.safetensors "
                               "(0 MiB free there). The last finished epoch is kept: make room, "
                               "then continue with the same command and --resume")
        (runs / name / run_folder.STATUS_FILE).write_text(json.dumps(status))
        (runs / name / run_folder.HISTORY_FILE).write_text(history)
        time.sleep(0.05)  # newest first: "cut" is listed first, "releasing" is watched
    page.goto(f"{server['url']}/train")
    wait_for_app(page)
    page.get_by_text("Runs", exact=True).wait_for(timeout=SLOW)
    page.get_by_text("release step", exact=False).first.wait_for(timeout=SLOW)
    page.locator(".js-plotly-plot").first.wait_for(timeout=SLOW)
    page.get_by_text("A training run is already going: releasing; wait for it or stop it.",
                     exact=True).wait_for(timeout=SLOW)
    assert page.locator('[data-testid="stException"]').count() == 0
    screenshot(page, "train.png", tmp_path)

    watch = page.locator('[data-testid="stSelectbox"]').filter(has_text="Watch")
    watch.locator("input").first.click()
    page.get_by_role("option", name="full", exact=True).click()
    page.get_by_text("Failed: disk full while writing", exact=False).wait_for(timeout=SLOW)
    resume = page.get_by_role("button", name=re.compile("Resume"))
    resume.wait_for(timeout=SLOW)
    assert resume.is_disabled(), "another run is alive: Resume waits"
    page.get_by_text("Resume waits: a training run is already going", exact=False).wait_for()
    wait_for_app(page)
    assert page.locator('[data-testid="stException"]').count() == 0
    screenshot(page, "train_failed.png", tmp_path)


def test_failures_page_refuses_paths_outside_the_data(server, page, assets, tmp_path):  # noqa: F811
    """A finished run whose test report was edited to name ../ paths, an absolute path and
    /etc as its image folder: picked in the sidebar, the Failures page shows a refusal line
    per crafted galaxy and nothing of those files. Screenshot in the test's tmp folder."""
    import json
    import shutil

    from galaxy_core.evaluate.report import REPORT_FILE
    from galaxy_core.model.store import report_dir
    from galaxy_core.train import run_folder

    model = run_folder.model_dir(server["runs"] / "crafted")
    shutil.copytree(assets["model"], model)
    path = report_dir(model, "test") / REPORT_FILE
    report = json.loads(path.read_text())
    report["image_dir"] = "/etc"
    report["confident_failures"] = [
        {"objid": str(9000 + i), "image": name, "true": "spiral", "predicted": "elliptical",
         "p_elliptical": 0.9, "p_spiral": 0.1, "confidence": 0.9}
        for i, name in enumerate(["../../../../../../etc/passwd", "/etc/shadow", "passwd"])]
    path.write_text(json.dumps(report))
    page.goto(f"{server['url']}/failures")
    wait_for_app(page)
    selector = page.locator('[data-testid="stSidebar"] [data-testid="stSelectbox"]')
    selector.locator("input").first.click()
    page.get_by_role("option", name="Run crafted", exact=True).click()
    page.get_by_text("Where does the model fail?").wait_for(timeout=SLOW)
    main = page.locator('[data-testid="stMain"]')
    # expect() retries: the run that follows picking a model may redraw the page a moment later
    expect(main).to_contain_text("The report's image folder /etc is refused", timeout=SLOW)
    wait_for_app(page)
    expect(main).to_contain_text("The report's image folder /etc is refused", timeout=SLOW)
    body = main.inner_text()
    assert "root:" not in body and "Traceback" not in body
    assert page.locator('[data-testid="stException"]').count() == 0
    screenshot(page, "failures_refused.png", tmp_path)


def test_large_fits_upload_is_framed(server, page, tmp_path):
    """A FITS file above the large-upload limit (2400x2400 float32, 22 MiB, synthetic) goes
    through the one-at-a-time slot and the streamed decode and is classified like any other;
    the loader's note says it was averaged down while read."""
    import numpy as np
    from astropy.io import fits

    y, x = np.mgrid[0:2400, 0:2400].astype(np.float32) + 0.5
    plane = 1000 * np.exp(-np.hypot(x - 1200, (y - 1200) / 0.7) / 80) + 10
    plane += np.random.default_rng(0).normal(0, 2, plane.shape).astype(np.float32)
    path = tmp_path / "synthetic_large.fits"
    fits.writeto(path, plane.astype(np.float32))
    page.goto(server["url"])
    wait_for_app(page)
    label = upload_and_wait(page, path)
    assert HEADLINE.fullmatch(label), label
    page.get_by_text("averaged over 2x2 pixel blocks", exact=False).wait_for(timeout=SLOW)
    wait_for_app(page)
    assert page.locator('[data-testid="stException"]').count() == 0
    screenshot(page, "classify_large_fits.png", tmp_path)


def test_a_batch_says_which_kind_of_unusual_at_desktop_and_phone(server, browser, shared_data,
                                                                  tmp_path):
    """Three pictures at once: an SDSS cutout, an ESA/Hubble galaxy that fills its frame and a
    flat grey picture. The table's Unusual column says 'may be a galaxy' and 'not like a galaxy'
    (the words of the single-picture verdict) and Why names the checks. The grid is drawn on a
    canvas, so the cells are read in the screenshots: docs/classify_batch.png (desktop) and the
    run's own folder (phone)."""
    from PIL import Image

    hubble = shared_data / "hubble_dev" / "heic0914b.jpg"
    cutout = sorted((shared_data / "gz1_sdss" / "images").glob("*.jpeg"))[0]
    if not hubble.is_file():
        pytest.skip(f"{hubble} not found")
    grey = tmp_path / "grey_card.png"
    Image.new("RGB", (300, 300), (128, 128, 128)).save(grey)
    files = [str(cutout), str(hubble), str(grey)]
    for width, name in ((1280, DOCS / "classify_batch.png"),
                        (390, server["log"].parent / "classify_batch_phone.png")):
        context = browser.new_context(viewport={"width": width, "height": 900},
                                      is_mobile=width < 500, has_touch=width < 500)
        page = context.new_page()
        try:
            page.goto(server["url"])
            page.wait_for_selector('[data-testid="stSidebar"]', state="attached",
                                   timeout=60_000)  # folded away on a phone
            page.get_by_text("Classify a galaxy").wait_for(timeout=SLOW)
            page.set_input_files('[data-testid="stFileUploader"] input[type="file"]', files)
            page.get_by_text("Batch: 3 classified, 0 failed").wait_for(timeout=SLOW)
            table = page.locator('[data-testid="stDataFrame"]').first
            table.wait_for(timeout=SLOW)
            page.wait_for_function(
                "!document.querySelector('[data-testid=\"stStatusWidget\"]')", timeout=SLOW)
            assert page.locator('[data-testid="stException"]').count() == 0
            table.scroll_into_view_if_needed()
            page.wait_for_timeout(1500)
            box = table.bounding_box()
            assert box["width"] <= width, "the table fits the page; it scrolls inside"
            page.screenshot(path=str(name), clip={"x": 0, "y": max(box["y"] - 80, 0),
                                                  "width": width,
                                                  "height": box["height"] + 160})
        finally:
            context.close()

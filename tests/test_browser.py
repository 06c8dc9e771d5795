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
from pathlib import Path

import pytest

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
    port = free_port()
    log = tmp / "streamlit.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true",
             "--server.port", str(port), "--server.address", "127.0.0.1",
             "--server.fileWatcherType", "none", "--browser.gatherUsageStats", "false"],
            cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, proc, log)
        yield {"url": url, "shipped": shipped, "log": log, "runs": tmp / "runs", "pid": proc.pid}
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


@pytest.fixture
def galaxy_png(tmp_path) -> Path:
    path = tmp_path / "test_spiral.png"
    draw_galaxy("spiral", 160, seed=3).save(path)
    return path


def wait_for_app(page) -> None:
    page.wait_for_selector('[data-testid="stSidebar"]', timeout=60_000)
    page.wait_for_function("!document.querySelector('[data-testid=\"stStatusWidget\"]')",
                           timeout=SLOW)


def screenshot(page, name: str, folder: Path = DOCS) -> None:
    """Stable names in docs/, so a run with the shipped model overwrites the earlier ones."""
    height = page.evaluate("() => { const m = document.querySelector('[data-testid=\"stMain\"]');"
                           " return m ? m.scrollHeight : 1000; }")
    page.set_viewport_size({"width": 1440, "height": int(min(max(height, 900), 2200))})
    page.wait_for_timeout(1500)
    folder.mkdir(exist_ok=True)
    page.screenshot(path=str(folder / name))
    page.set_viewport_size({"width": 1440, "height": 1000})


def upload_and_wait(page, path: Path) -> str:
    page.set_input_files('[data-testid="stFileUploader"] input[type="file"]', str(path))
    metric = page.locator('[data-testid="stMetricValue"]').first
    metric.wait_for(timeout=SLOW)
    cam = page.locator('img[alt="Grad-CAM overlay"]')
    cam.wait_for(timeout=SLOW)
    page.wait_for_function(
        "() => { const i = document.querySelector('img[alt=\"Grad-CAM overlay\"]');"
        " return i && i.complete && i.naturalWidth > 0; }", timeout=SLOW)
    return metric.inner_text()


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
    assert re.fullmatch(r"(Spiral|Elliptical)", label.strip()), label
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
    screenshot(page, "evaluate.png")

    page.goto(f"{server['url']}/failures")
    wait_for_app(page)
    details = page.get_by_role("button", name=re.compile("Details"))
    details.first.wait_for(timeout=SLOW)
    page.get_by_text("Each card:").wait_for(timeout=SLOW)  # drawn after the last card
    wait_for_app(page)
    assert page.locator('[data-testid="stException"]').count() == 0
    screenshot(page, "failures.png")
    details.first.click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_text("SDSS objid").wait_for(timeout=SLOW)
    dialog.locator("img").first.wait_for(timeout=SLOW)


def test_train_page_shows_each_run_state(server, page, tmp_path):
    """Runs in every state the Train page reads back from a run folder, the live one between
    training and release ("trained") included; the screenshot goes to the test's tmp folder."""
    import json

    from galaxy_core.train import run_folder

    runs = server["runs"]
    history = "".join(json.dumps({"epoch": e, "train_loss": 0.6 / e, "val_loss": 0.5 / e,
                                  "val_accuracy": 0.8 + e / 50, "val_macro_f1": 0.75 + e / 50,
                                  "seconds": 30}) + "\n" for e in (1, 2, 3))
    states = {"done": ("finished", None), "releasing": ("trained", server["pid"]),
              "cut": ("training", 2**22 + 12345)}
    for name, (state, pid) in states.items():
        (runs / name).mkdir(parents=True, exist_ok=True)
        (runs / name / run_folder.STATUS_FILE).write_text(json.dumps({
            "state": state, "pid": pid, "epoch": 3, "epochs": 3, "step": 90, "total_steps": 90}))
        (runs / name / run_folder.HISTORY_FILE).write_text(history)
    page.goto(f"{server['url']}/train")
    wait_for_app(page)
    page.get_by_text("Runs", exact=True).wait_for(timeout=SLOW)
    page.get_by_text("release step", exact=False).first.wait_for(timeout=SLOW)
    page.locator(".js-plotly-plot").first.wait_for(timeout=SLOW)
    assert page.locator('[data-testid="stException"]').count() == 0
    screenshot(page, "train.png", tmp_path)

"""The dashboard served the way ``make run`` serves it: the shipped Streamlit config must turn
the file watcher off, so that an idle open tab costs the server next to nothing (watching the
repository and .venv once kept it at ~70% CPU and filled the log with inotify overflows)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.test_app import REPO
from tests.test_browser import (browser_context_args, browser_type_launch_args,  # noqa: F401
                                streamlit_app)

pytestmark = pytest.mark.browser

IDLE_SECONDS = 15.0
MAX_IDLE_CPU = 0.10
"""Largest share of one core the server may use while a tab sits open and idle."""


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (from /proc, in seconds)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """``streamlit run app.py`` from the repository, with no option beyond address and port:
    everything else comes from .streamlit/config.toml, as with ``make run``."""
    log = tmp_path_factory.mktemp("serving") / "server.log"
    with streamlit_app(dict(os.environ), log) as (url, proc):
        yield url, proc, log


def test_shipped_config_turns_the_file_watcher_off():
    done = subprocess.run([str(Path(sys.executable).parent / "streamlit"), "config", "show"],
                          cwd=REPO, capture_output=True, text=True, timeout=60)
    assert 'fileWatcherType = "none"' in done.stdout


def test_an_idle_tab_costs_the_server_almost_nothing(served, page):
    url, proc, log = served
    page.goto(url)
    page.get_by_text("Spiral or elliptical?").first.wait_for(timeout=120_000)
    time.sleep(3)  # let the first page finish drawing
    before, started = cpu_seconds(proc.pid), time.monotonic()
    time.sleep(IDLE_SECONDS)
    share = (cpu_seconds(proc.pid) - before) / (time.monotonic() - started)
    text = log.read_text(errors="replace")
    assert "Inotify" not in text and "inotify" not in text, text[-2000:]
    assert share < MAX_IDLE_CPU, f"idle server used {share:.1%} of a core"

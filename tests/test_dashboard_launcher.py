"""``galaxy dashboard``: which app it starts, with which Streamlit call, and its refusals (one
line, exit 2, nothing started). Starting it for real is tests/test_wheel_install.py's job."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from galaxy_core import dashboard_launcher, locations
from galaxy_core.cli import main
from galaxy_core.errors import GalaxyError

REPO = Path(__file__).resolve().parents[1]


def test_in_a_checkout_the_app_is_the_repositorys() -> None:
    assert dashboard_launcher.app_dir() == REPO
    assert (REPO / ".streamlit" / "config.toml").is_file()


def test_without_app_files_it_says_to_reinstall(monkeypatch, tmp_path) -> None:
    monkeypatch.setattr(locations, "PROJECT_ROOT", tmp_path / "checkout")
    monkeypatch.setattr(locations, "BUNDLE_DIR", tmp_path / "bundle")
    with pytest.raises(GalaxyError, match="not installed"):
        dashboard_launcher.app_dir()


def test_the_streamlit_call_passes_only_port_address_and_headless(tmp_path) -> None:
    cmd = dashboard_launcher.streamlit_command(tmp_path, port=8600, address="127.0.0.1",
                                               headless=True)
    assert cmd[:5] == [sys.executable, "-m", "streamlit", "run", str(tmp_path / "app.py")]
    assert cmd[5:] == ["--server.port", "8600", "--server.address", "127.0.0.1",
                       "--server.headless", "true"]
    # everything else (the file watcher above all) comes from the shipped config file
    assert not any("fileWatcher" in part for part in cmd)
    assert dashboard_launcher.streamlit_command(tmp_path)[5:] == ["--server.port", "8501"]


@pytest.mark.parametrize("args, said", [
    (["--port", "0"], "outside [1, 65535]"),
    (["--port", "http"], "is not a whole number"),
    (["--data", "/no/such/folder/anywhere"], "--data /no/such/folder/anywhere: no such folder"),
])
def test_bad_options_are_one_line_and_exit_2(args, said, capsys) -> None:
    try:
        code = main(["dashboard", *args])
    except SystemExit as stop:  # argparse's refusals
        code = stop.code
    assert code == 2
    err = capsys.readouterr().err
    assert said in err and len(err.strip().splitlines()) == 1, err

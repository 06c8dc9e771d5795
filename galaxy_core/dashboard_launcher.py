"""``galaxy dashboard``: start the Streamlit dashboard with the shipped configuration.

The dashboard (``app.py``, ``pages/``, ``dashboard/``) and its ``.streamlit/config.toml`` sit
at the root of a checkout, or under ``galaxy_core/_bundle`` in an installed wheel
(:data:`galaxy_core.locations.BUNDLE_DIR`). Streamlit reads ``.streamlit/config.toml`` from the
folder it is started in, so the server is started there: the shipped settings apply as they are
(file watcher off, upload limit, no usage statistics, the theme), whichever folder the command
was typed in. This module never imports Streamlit; it starts ``python -m streamlit run`` with
the same interpreter.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

from galaxy_core import locations
from galaxy_core.errors import GalaxyError

APP_INSTALL_HINT = "pip install 'galaxy-morphology[app]'"
DEFAULT_PORT = 8501


def app_dir() -> Path:
    """The folder holding ``app.py`` and ``.streamlit/config.toml``: the checkout, else the
    installed package's bundle."""
    for folder in (locations.PROJECT_ROOT, locations.BUNDLE_DIR):
        if (folder / "app.py").is_file() and (folder / ".streamlit" / "config.toml").is_file():
            return folder
    raise GalaxyError(f"the dashboard is not installed: no app.py in {locations.PROJECT_ROOT} "
                      f"or {locations.BUNDLE_DIR}; reinstall the package")


def streamlit_command(folder: Path, port: int = DEFAULT_PORT, address: str | None = None,
                      headless: bool = False) -> list[str]:
    """The ``streamlit run`` call for ``folder``'s app (run it with ``cwd=folder``)."""
    cmd = [sys.executable, "-m", "streamlit", "run", str(folder / "app.py"),
           "--server.port", str(port)]
    if address:
        cmd += ["--server.address", address]
    if headless:
        cmd += ["--server.headless", "true"]
    return cmd


def launch(port: int = DEFAULT_PORT, data: str | None = None, address: str | None = None,
           headless: bool = False) -> int:
    """Run the dashboard until it stops; return Streamlit's exit status (130 on Ctrl-C).

    ``data`` is the real-data root (``GALAXY_DATA``: ``gz1_sdss/``, ``seed_examples/``); a
    relative path is taken from the current folder, not from where the server runs."""
    if importlib.util.find_spec("streamlit") is None:
        raise GalaxyError(f"the dashboard needs Streamlit: {APP_INSTALL_HINT}")
    folder = app_dir()
    env = dict(os.environ)
    if data is not None:
        root = Path(data).expanduser().resolve()
        if not root.is_dir():
            raise GalaxyError(f"--data {data}: no such folder")
        env["GALAXY_DATA"] = str(root)
    proc = subprocess.Popen(streamlit_command(folder, port, address, headless), cwd=folder,
                            env=env)
    try:
        return proc.wait()
    except KeyboardInterrupt:  # the server got the same Ctrl-C: let it finish cleanly
        try:
            return proc.wait(timeout=10) or 130
        except subprocess.TimeoutExpired:
            proc.terminate()
            proc.wait()
            return 130

"""The package works on its own: build the wheel from the working tree, install it into a fresh
virtual environment outside the repository, and from an empty temporary folder classify a real
cutout with the shipped model and start the dashboard until its health check answers.

Offline: the wheel is built without build isolation (``pip wheel --no-build-isolation``, the
setuptools of this environment) and installed with ``--no-index --find-links`` (only that
wheel). The fresh environment gets its third-party packages by a ``.pth`` line naming this
environment's site-packages (a plain path line, so this environment's editable finder for the
checkout is *not* run there): resolving torch & co. afresh would need a network or gigabytes of
local wheels. So the wheel goes in with ``--no-deps``, and a test then checks each of its
requirements, core and ``[app]``, against the versions the fresh environment imports: a bound
that the tested versions do not meet fails.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import sysconfig
import time
import urllib.request
from pathlib import Path

import pytest

from galaxy_core import __version__, locations

pytestmark = [pytest.mark.slow, pytest.mark.realdata]

REPO = Path(__file__).resolve().parents[1]
HEALTH_TIMEOUT_S = 240  # the dashboard imports torch; on a loaded 2-core machine that takes a while


def _run(cmd: list[str], **kwargs) -> subprocess.CompletedProcess:
    result = subprocess.run(cmd, capture_output=True, text=True, **kwargs)
    assert result.returncode == 0, f"{cmd} exited {result.returncode}:\n{result.stdout[-3000:]}" \
                                   f"\n{result.stderr[-3000:]}"
    return result


def _working_tree_copy(target: Path) -> Path:
    """Tracked files and untracked ones git does not ignore (a model replaced but not yet
    committed is what gets shipped), as they are now; no stale build/ folder."""
    listed = _run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                  cwd=REPO).stdout.split("\0")
    for name in filter(None, listed):
        source = REPO / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            (target / name).hardlink_to(source) if _same_fs(source, target) else \
                (target / name).write_bytes(source.read_bytes())
    return target


def _same_fs(a: Path, b: Path) -> bool:
    return a.stat().st_dev == b.stat().st_dev


def _clean_env(home: Path) -> dict[str, str]:
    """No GALAXY_* setting, no PYTHONPATH, a HOME of its own (no ~/.streamlit, no user data)."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("GALAXY_") and k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(HOME=str(home), XDG_DATA_HOME=str(home / "share"), PYTHONNOUSERSITE="1")
    return env


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def installed(tmp_path_factory, shared_data) -> dict:
    root = tmp_path_factory.mktemp("wheel")
    src = _working_tree_copy(root / "src")
    dist = root / "dist"
    _run([sys.executable, "-m", "pip", "wheel", str(src), "--no-deps", "--no-build-isolation",
          "--no-index", "--quiet", "-w", str(dist)], cwd=root)
    wheels = list(dist.glob("galaxy_morphology-*.whl"))
    assert len(wheels) == 1, wheels
    venv = root / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)])
    python = venv / "bin" / "python"
    purelib = Path(_run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()"
                         "['purelib'])"]).stdout.strip())
    (purelib / "_test_reuse_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    # --ignore-installed: the checkout's editable install is visible through the .pth line too
    _run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-index",
          "--no-deps", "--ignore-installed", "--quiet", str(wheels[0])])
    work = root / "elsewhere"
    work.mkdir()
    return {"venv": venv, "wheel": wheels[0], "work": work, "env": _clean_env(root / "home"),
            "data": shared_data}


def test_wheel_carries_the_model_and_the_dashboard(installed) -> None:
    wheel: Path = installed["wheel"]
    assert wheel.name.startswith(f"galaxy_morphology-{__version__}-")
    import zipfile
    names = set(zipfile.ZipFile(wheel).namelist())
    bundle = "galaxy_core/_bundle/"
    shipped = locations.PROJECT_ROOT / "models" / "resnet50_gz1"
    for path in shipped.rglob("*"):
        rel = path.relative_to(locations.PROJECT_ROOT).as_posix()
        if path.is_file() and path.name not in ("model.onnx", "gradcam_cache.npz"):
            assert bundle + rel in names, f"{rel} is not in the wheel"
    for rel in ("app.py", ".streamlit/config.toml", "pages/classify.py", "dashboard/ui.py"):
        assert bundle + rel in names, f"{rel} is not in the wheel"
    print(f"wheel: {wheel.name}, {wheel.stat().st_size / 2**20:.1f} MiB")


def test_wheel_requirements_hold_for_the_packages_it_runs_with(installed) -> None:
    """Every requirement of the wheel, core and [app], is met by what the fresh environment
    imports: the bounds in pyproject.toml hold for the tested versions."""
    script = (
        "import importlib.metadata as md, json\n"
        "from packaging.requirements import Requirement\n"
        "bad = []\n"
        "for text in md.requires('galaxy-morphology'):\n"
        "    req = Requirement(text)\n"
        "    if req.marker and not req.marker.evaluate({'extra': 'app'}):\n"
        "        continue\n"
        "    try:\n"
        "        have = md.version(req.name)\n"
        "    except md.PackageNotFoundError:\n"
        "        have = None\n"
        "    if have is None or not req.specifier.contains(have, prereleases=True):\n"
        "        bad.append(f'{req} (installed: {have})')\n"
        "print(json.dumps([str(md.distribution('galaxy-morphology').locate_file('')), bad]))\n")
    where, bad = json.loads(_run([str(installed["venv"] / "bin" / "python"), "-c", script],
                                 cwd=installed["work"], env=installed["env"]).stdout)
    assert Path(where).is_relative_to(installed["venv"]), where
    assert bad == []


def test_installed_package_runs_from_the_wheel_not_the_checkout(installed) -> None:
    out = _run([str(installed["venv"] / "bin" / "python"), "-c",
                "import galaxy_core, galaxy_core.locations as l; "
                "print(galaxy_core.__file__); print(l.SHIPPED_MODEL_DIR); print(l.IN_CHECKOUT)"],
               cwd=installed["work"], env=installed["env"]).stdout.split("\n")
    assert Path(out[0]).is_relative_to(installed["venv"]), out
    assert Path(out[1]).is_relative_to(installed["venv"]) and Path(out[1]).is_dir(), out
    assert out[2] == "False"


def test_version_agrees(installed) -> None:
    out = _run([str(installed["venv"] / "bin" / "galaxy"), "--version"], cwd=installed["work"],
               env=installed["env"]).stdout.strip()
    assert out == f"galaxy {__version__}"


def test_galaxy_predict_classifies_a_real_cutout_with_the_shipped_model(installed) -> None:
    cutout = sorted((installed["data"] / "gz1_sdss" / "images").glob("*.jpeg"))[0]
    work: Path = installed["work"]
    _run([str(installed["venv"] / "bin" / "galaxy"), "predict", str(cutout), "--views", "1",
          "--workers", "0", "-o", "answers.csv"], cwd=work, env=installed["env"])
    rows = list(csv.DictReader(open(work / "answers.csv")))
    assert len(rows) == 1
    assert rows[0]["label"] in ("spiral", "elliptical") and not rows[0]["error"], rows[0]
    assert abs(float(rows[0]["p_spiral"]) + float(rows[0]["p_elliptical"]) - 1) < 1e-3
    # the weights it ran are the checkout's shipped ones, byte for byte
    record = json.loads((work / "answers.csv.run.json").read_text())
    shipped = locations.PROJECT_ROOT / "models" / "resnet50_gz1" / "model.safetensors"
    assert json.dumps(record).count(hashlib.sha256(shipped.read_bytes()).hexdigest()) == 1
    assert str(installed["venv"]) in json.dumps(record)  # loaded from the installed package


def test_galaxy_dashboard_answers_its_health_check(installed) -> None:
    port = _free_port()
    work: Path = installed["work"]
    log = open(work / "dashboard.log", "w")
    proc = subprocess.Popen([str(installed["venv"] / "bin" / "galaxy"), "dashboard", "--port",
                             str(port), "--address", "127.0.0.1", "--headless", "--data",
                             str(installed["data"])], cwd=work, env=installed["env"],
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline, answer = time.monotonic() + HEALTH_TIMEOUT_S, None
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health",
                                            timeout=5) as reply:
                    answer = (reply.status, reply.read().decode())
                    break
            except OSError:
                time.sleep(1)
        assert answer == (200, "ok"), (proc.poll(), (work / "dashboard.log").read_text()[-3000:])
        # the server runs in the bundle, so Streamlit reads the shipped .streamlit/config.toml
        server = int(Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()[0])
        cwd = Path(os.readlink(f"/proc/{server}/cwd"))
        assert cwd.is_relative_to(installed["venv"]) and cwd.name == "_bundle", cwd
        shown = _run([str(installed["venv"] / "bin" / "python"), "-m", "streamlit", "config",
                      "show"], cwd=cwd, env=installed["env"]).stdout
        assert 'fileWatcherType = "none"' in shown
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()

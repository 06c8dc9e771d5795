"""What one idle browser tab costs the dashboard server, with Streamlit's file watcher off (the
shipped config, ``make run``) and on (``make dev``): share of a core used over a quiet period,
and inotify overflow lines logged. Both servers are started here on loopback, one after the
other, and driven by headless Chromium.

    python benchmarks/bench_dashboard_idle.py [--seconds 30]
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"


def _port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(watcher: str, seconds: float) -> dict[str, float]:
    from playwright.sync_api import sync_playwright

    port, log = _port(), Path(tempfile.mkstemp(suffix=".log")[1])
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [str(Path(sys.executable).parent / "streamlit"), "run", "app.py",
             "--server.headless", "true", "--server.address", "127.0.0.1",
             "--server.port", str(port), "--server.fileWatcherType", watcher],
            cwd=REPO, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        for _ in range(180):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2)
                break
            except OSError:
                time.sleep(0.5)
        with sync_playwright() as play:
            browser = play.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
            page = browser.new_page()
            started = time.monotonic()
            page.goto(f"http://127.0.0.1:{port}")
            page.get_by_text("Spiral or elliptical?").first.wait_for(timeout=180_000)
            first_page = time.monotonic() - started
            time.sleep(3)
            before, t0 = _cpu(proc.pid), time.monotonic()
            time.sleep(seconds)
            share = (_cpu(proc.pid) - before) / (time.monotonic() - t0)
            browser.close()
        text = log.read_text(errors="replace")
        return {"idle_cpu": share, "first_page_s": first_page,
                "inotify_lines": sum("notify" in line.lower() for line in text.splitlines())}
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.unlink(missing_ok=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=30.0, help="idle period measured")
    args = ap.parse_args()
    results = {w: measure(w, args.seconds) for w in ("none", "auto")}
    print(f"one idle tab for {args.seconds:.0f} s, same machine, one run:")
    print("watcher            idle CPU (share of a core)  first page (s)  inotify lines")
    for watcher, r in results.items():
        name = "off (make run)" if watcher == "none" else "on (make dev)"
        print(f"{name:<18} {r['idle_cpu']:>10.1%}  {r['first_page_s']:>22.1f}  "
              f"{r['inotify_lines']:>13}")
    off, on = results["none"]["idle_cpu"], results["auto"]["idle_cpu"]
    print(f"ratio on/off: {on / max(off, 1e-4):.0f}x idle CPU")


if __name__ == "__main__":
    main()

"""A class of students uploading galaxies on the Classify page at once (issue 14, item 8).

Starts the dashboard as ``make run`` does (``streamlit run app.py`` from the repository, with its
.streamlit/config.toml, headless, on a free port of 127.0.0.1; the shipped model unless
GALAXY_MODEL_DIR says otherwise), then opens N sessions (default 30) in threads, their starts
spread evenly over a ramp (default 30 s). Each session opens the page and uploads K images
(default 3) one after another with a think time between them (default 3 s, times a random factor
0.5-1.5). By default each upload is added to the uploader, as a browser does when a student
drops one more file (the page then classifies the whole batch again); ``--mode replace``
removes the previous file first. Images: real SDSS cutouts from $GALAXY_DATA/gz1_sdss/images
(or /work/shared/data/gz1_sdss/images), ``--distinct`` of them so that some students upload the
same galaxy; synthetic galaxies (tests/conftest.py) when no data is found.

The sessions speak Streamlit's own protocol (tools/streamlit_client.py), not a browser: the
server does the work 30 tabs give it, the client costs little. Measured per upload: time to
answer, from sending the rerun that carries the new file (after its PUT) to the run's
``script_finished``; whether the page shows a verdict for that file; exception and error
elements (must be none). The pictures are then fetched as a browser would (timed apart). The
server's resident memory (VmRSS of its process) is read idle, before the first upload (one
tab opened: model loaded), after the first 50 uploads, at the end, and at its peak (sampled
every 0.5 s); its CPU seconds are counted over the load.

Targets: median < 3 s, p95 < 10 s, no exceptions, memory flat after the first 50 uploads
(here: under 100 MB more at the end than after upload 50).

    .venv/bin/python benchmarks/bench_class_load.py [--sessions 30] [--uploads 3] [--ramp 30]
        [--think 3] [--distinct 20] [--mode append|replace] [--timeout 1200]

Loopback only; the whole run is bounded by --timeout and the server is always stopped.
"""

from __future__ import annotations

import argparse
import io
import math
import os
import random
import shutil
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.test_browser import QUIET, streamlit_app  # noqa: E402  (starts and stops the app)
from tools.streamlit_client import Session  # noqa: E402

MEDIAN_TARGET, P95_TARGET = 3.0, 10.0
FLAT_MB = 100
"""Memory counts as flat when the end is less than this many MB above the milestone."""
VERDICT = "### :"
"""How the verdict headline starts (dashboard/verdict.py, Verdict.markdown)."""
MIME = {".jpeg": "image/jpeg", ".jpg": "image/jpeg", ".png": "image/png"}


@dataclass
class Upload:
    session: int
    index: int
    name: str
    seconds: float = math.nan
    upload_seconds: float = math.nan
    pictures_seconds: float = math.nan
    new: bool = True
    """No session had uploaded this galaxy before (the server keeps answers by content)."""
    answered: bool = False
    exceptions: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    failure: str = ""


def proc_status(pid: int) -> tuple[float, float]:
    """(resident MB, CPU seconds) of a process, from /proc."""
    rss = 0.0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1]) / 1024
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return rss, (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def load_images(distinct: int, seed: int) -> tuple[list[tuple[str, bytes, str]], str]:
    """``distinct`` images (name, bytes, MIME type) and where they come from."""
    root = Path(os.environ.get("GALAXY_DATA", "/work/shared/data")) / "gz1_sdss" / "images"
    files = sorted(p for p in root.glob("*") if p.suffix.lower() in MIME) if root.is_dir() else []
    if files:
        chosen = random.Random(seed).sample(files, min(distinct, len(files)))
        return ([(p.name, p.read_bytes(), MIME[p.suffix.lower()]) for p in chosen],
                f"{len(chosen)} SDSS cutouts from {root}")
    from tests.conftest import draw_galaxy

    images = []
    for i in range(distinct):
        buffer = io.BytesIO()
        draw_galaxy("spiral" if i % 2 else "elliptical", 160, seed=i).save(buffer, "PNG")
        images.append((f"synthetic_{i:03d}.png", buffer.getvalue(), "image/png"))
    return images, f"{distinct} SYNTHETIC galaxies (no data under {root})"


class Load:
    """The sessions, their results and the memory readings, shared by the threads."""

    def __init__(self, args: argparse.Namespace, url: str, pid: int,
                 images: list[tuple[str, bytes, str]]) -> None:
        self.args, self.url, self.pid, self.images = args, url, pid, images
        self.uploads: list[Upload] = []
        self.seen: set[str] = set()  # galaxies uploaded so far, by any session
        self.opens: list[float] = []
        self.sessions: list[Session] = []
        self.lock = threading.Lock()
        self.milestone_rss: float | None = None
        self.peak_rss = 0.0
        self.done = threading.Event()
        self.deadline = time.monotonic() + args.timeout

    def sample(self) -> None:
        while not self.done.wait(0.5):
            try:
                self.peak_rss = max(self.peak_rss, proc_status(self.pid)[0])
            except OSError:
                return

    def student(self, number: int, start_at: float) -> None:
        args = self.args
        rng = random.Random(args.seed * 1000 + number)
        picks = rng.sample(range(len(self.images)), min(args.uploads, len(self.images)))
        time.sleep(max(0.0, start_at - time.monotonic()))
        session = Session(self.url, timeout=max(1.0, self.deadline - time.monotonic()))
        with self.lock:
            self.sessions.append(session)
        try:
            self.opens.append(session.open().seconds)
        except Exception as exc:  # noqa: BLE001  (reported, never raised in a thread)
            self.record(Upload(number, 0, "", failure=f"open: {type(exc).__name__}: {exc}"))
            return
        for k in range(args.uploads):
            name, data, mime = self.images[picks[k % len(picks)]]
            upload = Upload(number, k, name)
            with self.lock:
                upload.new = name not in self.seen
                self.seen.add(name)
            try:
                result = session.upload(name, data, mime, replace=args.mode == "replace")
                upload.seconds, upload.upload_seconds = result.seconds, result.upload_seconds
                upload.exceptions, upload.errors = result.exceptions, result.errors
                upload.answered = (any(t.startswith(VERDICT) for t in result.texts)
                                   and name in result.text)
                start = time.monotonic()
                for picture in result.images:
                    session.fetch(picture)
                upload.pictures_seconds = time.monotonic() - start
            except Exception as exc:  # noqa: BLE001
                upload.failure = f"{type(exc).__name__}: {exc}"
            self.record(upload)
            if upload.failure:
                return
            if k + 1 < args.uploads:
                time.sleep(args.think * rng.uniform(0.5, 1.5))

    def record(self, upload: Upload) -> None:
        with self.lock:
            self.uploads.append(upload)
            if len(self.uploads) == self.args.milestone and self.milestone_rss is None:
                self.milestone_rss = proc_status(self.pid)[0]

    def run(self) -> bool:
        """All sessions; False when the global timeout cut them short."""
        t0 = time.monotonic()
        n = self.args.sessions
        threads = [threading.Thread(
            target=self.student, args=(i, t0 + self.args.ramp * i / max(1, n - 1)), daemon=True)
            for i in range(n)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(max(0.0, self.deadline - time.monotonic()))
        return not any(t.is_alive() for t in threads)


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (the value below which ``q`` of them lie)."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def row(label: str, values: list[float], target: str = "") -> str:
    values = [v for v in values if v == v]
    if not values:
        return f"  {label:<38} {'-':>4}"
    return (f"  {label:<38} {len(values):>4} {statistics.median(values):>8.2f} "
            f"{percentile(values, 0.95):>8.2f} {max(values):>8.2f}  {target}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sessions", type=int, default=30, help="students (browser tabs)")
    ap.add_argument("--uploads", type=int, default=3, help="images each student uploads")
    ap.add_argument("--ramp", type=float, default=30.0,
                    help="seconds over which the sessions start (0: all at once)")
    ap.add_argument("--think", type=float, default=3.0,
                    help="mean seconds between a student's uploads (times 0.5-1.5 at random)")
    ap.add_argument("--distinct", type=int, default=20, help="how many different images")
    ap.add_argument("--mode", choices=["append", "replace"], default="append",
                    help="append: each upload joins the uploader's files (the page classifies "
                         "the batch); replace: the previous file is removed first")
    ap.add_argument("--milestone", type=int, default=50,
                    help="uploads after which memory should stay flat")
    ap.add_argument("--timeout", type=float, default=1200.0, help="global limit in seconds")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--server-option", action="append", default=[], metavar="NAME=VALUE",
                    help="an extra Streamlit option, e.g. runner.postScriptGC=true (repeatable)")
    args = ap.parse_args()

    images, source = load_images(args.distinct, args.seed)
    tmp = Path(tempfile.mkdtemp(prefix="bench_class_load_"))
    env = {**os.environ, "GALAXY_RUNS_DIR": str(tmp / "runs"), "PYTHONUNBUFFERED": "1"}
    if "GALAXY_DATA" not in env and Path("/work/shared/data").is_dir():
        env["GALAXY_DATA"] = "/work/shared/data"  # as `make run` sets it
    options = (*QUIET, *(f"--{o.partition('=')[0]}={o.partition('=')[2]}"
                         for o in args.server_option))
    loads = [os.getloadavg()[0]]
    try:
        with streamlit_app(env, tmp / "streamlit.log", options) as (url, proc):
            idle_rss, _ = proc_status(proc.pid)
            warm = Session(url, timeout=args.timeout)
            warm_open = warm.open().seconds  # the first run loads torch and the model
            warm.close()
            load = Load(args, url, proc.pid, images)
            before_rss, cpu0 = proc_status(proc.pid)
            load.peak_rss = before_rss
            threading.Thread(target=load.sample, daemon=True).start()
            wall0 = time.monotonic()
            finished = load.run()
            wall = time.monotonic() - wall0
            end_rss, cpu1 = proc_status(proc.pid)
            load.done.set()
            for session in list(load.sessions):
                try:
                    session.close()
                except Exception:  # noqa: BLE001  (a connection already gone)
                    pass
            time.sleep(3)
            closed_rss, _ = proc_status(proc.pid)
            loads.append(os.getloadavg()[0])
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    report(args, source, load, finished, wall, cpu1 - cpu0, warm_open, loads,
           (idle_rss, before_rss, end_rss, closed_rss))
    ok = [u for u in load.uploads if not u.failure]
    bad = sum(len(u.exceptions) + len(u.errors) for u in load.uploads)
    passed = (finished and ok and len(ok) == args.sessions * args.uploads and bad == 0
              and statistics.median(u.seconds for u in ok) < MEDIAN_TARGET
              and percentile([u.seconds for u in ok], 0.95) < P95_TARGET)
    return 0 if passed else 1


def report(args: argparse.Namespace, source: str, load: Load, finished: bool, wall: float,
           cpu: float, warm_open: float, loads: list[float],
           rss: tuple[float, float, float, float]) -> None:
    idle_rss, before_rss, end_rss, closed_rss = rss
    uploads = load.uploads
    ok = [u for u in uploads if not u.failure]
    model = os.environ.get("GALAXY_MODEL_DIR", "the shipped model")
    print(f"\nClassify under load: {args.sessions} sessions x {args.uploads} uploads "
          f"({args.mode}), ramp {args.ramp:g} s, think {args.think:g} s x 0.5-1.5, {source}; "
          f"{model}; {os.cpu_count()} CPU cores, load average {loads[0]:.1f} before and "
          f"{loads[-1]:.1f} after (other work on the machine slows every number)")
    if not finished:
        print(f"  STOPPED by the global timeout ({args.timeout:g} s): partial results")
    print(f"  {'seconds':<38} {'n':>4} {'median':>8} {'p95':>8} {'max':>8}  target")
    times = [u.seconds for u in ok]
    verdict = "no answers"
    if times:
        passed = (statistics.median(times) < MEDIAN_TARGET
                  and percentile(times, 0.95) < P95_TARGET)
        verdict = "PASS" if passed else "FAIL"
    print(row("time to answer (rerun -> finished)", times,
              f"median < {MEDIAN_TARGET:g}, p95 < {P95_TARGET:g}: {verdict}"))
    for k in range(args.uploads):
        shown = f"{k + 1} image(s) on the page" if args.mode == "append" else "1 image"
        print(row(f"  upload {k + 1} ({shown})", [u.seconds for u in ok if u.index == k]))
    print(row("  galaxy new to the server", [u.seconds for u in ok if u.new]))
    print(row("  galaxy sent before by an earlier upload", [u.seconds for u in ok if not u.new]))
    print(row("upload URL + PUT, before the rerun", [u.upload_seconds for u in ok]))
    print(row("pictures fetched after the answer", [u.pictures_seconds for u in ok]))
    print(row("page opened (first run of a tab)", load.opens))
    print(f"  warm-up tab before the load (loads the model): {warm_open:.1f} s")

    bad = sum(len(u.exceptions) + len(u.errors) for u in uploads)
    print(f"\n  uploads answered {len(ok)} of {args.sessions * args.uploads}; "
          f"failed {len(uploads) - len(ok)}; without a verdict naming the file "
          f"{sum(not u.answered for u in ok)}")
    print(f"  exception / error elements: {sum(len(u.exceptions) for u in uploads)} / "
          f"{sum(len(u.errors) for u in uploads)} (must be 0: {'PASS' if bad == 0 else 'FAIL'})")
    for u in [u for u in uploads if u.failure or u.exceptions or u.errors][:5]:
        print(f"    session {u.session} upload {u.index + 1} {u.name}: "
              f"{u.failure or (u.exceptions + u.errors)[0]}")

    milestone = load.milestone_rss
    print("\n  server RSS (MB)")
    for label, value in [
            ("idle after start", f"{idle_rss:.0f}"),
            ("before the first upload (model in)", f"{before_rss:.0f}"),
            (f"after the first {args.milestone} uploads",
             f"{milestone:.0f}" if milestone is not None else f"n/a: {len(uploads)} uploads"),
            (f"at the end ({len(uploads)} uploads)", f"{end_rss:.0f}"),
            ("peak (sampled every 0.5 s)", f"{load.peak_rss:.0f}"),
            ("3 s after the tabs closed", f"{closed_rss:.0f}")]:
        print(f"    {label:<38} {value:>8}")
    if milestone is not None:
        growth = end_rss - milestone
        print(f"    after upload {args.milestone}: {growth:+.0f} MB over "
              f"{len(uploads) - args.milestone} more uploads (flat: < {FLAT_MB} MB: "
              f"{'PASS' if growth < FLAT_MB else 'FAIL'})")
    print(f"\n  server CPU: {cpu:.0f} s over {wall:.0f} s of load "
          f"({cpu / max(wall, 1e-9):.2f} cores busy on average), "
          f"{cpu / max(len(ok), 1):.1f} s per answered upload")


if __name__ == "__main__":
    sys.exit(main())

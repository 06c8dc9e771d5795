"""Server memory while visitors upload big pictures at once: three 150 MB FITS files (issue 13,
item 17), or four small files that decode big (issue 25, items 7 and 9): a ~300 KB 50-megapixel
float TIFF, a ~95 KB 49-megapixel 16-bit PNG.

Starts the dashboard the way ``make run`` does (``streamlit run app.py``, headless, no file
watcher, on a free port of 127.0.0.1), writes a SYNTHETIC FITS image (6000x6000 float32, about
144 MB: a smooth galaxy-like blob with sky noise, drawn here; not real survey data), then drives
three browser sessions (Playwright with Debian's Chromium) that each upload it on the Classify
page at the same moment and wait for the answer. The server's resident memory (its process and
any children: /proc/PID/status VmRSS, or psutil when installed) is sampled every 0.2 s.

Printed: the idle baseline (after one warm-up session has loaded the model and classified a
small image, then closed: the model cache is part of a normal idle server), the peak during the
three uploads, the memory about 10 s after the pages are closed, and the targets with pass/fail:
peak under 2.5 GB, and back within 300 MB of the baseline after the close.

Cases (``--case``): ``fits`` (the default: 3 sessions, a 6000 px float32 FITS of ~144 MB),
``float-tiff`` (4 sessions, a 7000 px float32 TIFF, deflate, ~400 KB: 49 megapixels, just under
the 50-megapixel limit, so it is decoded; 7072 px is refused by the limit in a second) and
``deep-png`` (4 sessions, a 7000 px 16-bit PNG, ~95 KB: 49 megapixels); the small ones are
mostly empty sky round a bright blob, which is why they compress so far. The target is the same
for all: peak under 2.5 GB. ``--write-only`` writes the case's file, prints its size and exits
(no server, no browser): a quick check of the generators, e.g. with ``--side 512``.

Usage:  .venv/bin/python benchmarks/bench_upload_memory.py [--case fits|float-tiff|deep-png]
            [--sessions N] [--side PX] [--settle 10] [--keep] [--write-only]
Uses the shipped model (or GALAXY_MODEL_DIR) and needs /usr/bin/chromium.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
PEAK_TARGET = 2.5e9
AFTER_TARGET = 300e6
ANSWER_TIMEOUT_MS = 900_000
QUEUE_WATCH = """new MutationObserver(() => {
  const main = document.querySelector('[data-testid="stMain"]');
  if (main && main.innerText.includes('queued')) window.__queued = true;
}).observe(document, {subtree: true, childList: true, characterData: true});"""


# --- the synthetic file ---------------------------------------------------------------------------
def write_synthetic_fits(path: Path, side: int, seed: int = 0) -> Path:
    """SYNTHETIC: a side x side float32 FITS image, an exponential blob (scale length side/40,
    axis ratio 0.7, tilted) on a sky of level 10 with Gaussian noise 2. Written in row blocks."""
    import numpy as np
    from astropy.io import fits

    header = fits.Header([("SIMPLE", True), ("BITPIX", -32), ("NAXIS", 2), ("NAXIS1", side),
                          ("NAXIS2", side)])
    header["COMMENT"] = "SYNTHETIC galaxy for benchmarks/bench_upload_memory.py, not real data"
    with open(path, "wb") as handle:
        handle.write(header.tostring().encode("ascii"))  # padded to 2880 bytes
        rng = np.random.default_rng(seed)
        cx = cy = side / 2
        scale, q, angle = side / 40, 0.7, 0.5
        cos, sin = np.cos(angle), np.sin(angle)
        xs = np.arange(side, dtype=np.float32) + 0.5 - cx
        for start in range(0, side, 250):
            ys = (np.arange(start, min(start + 250, side), dtype=np.float32) + 0.5 - cy)[:, None]
            u = xs * cos + ys * sin
            v = (-xs * sin + ys * cos) / q
            blob = 1000.0 * np.exp(-np.sqrt(u * u + v * v) / scale)
            rows = blob + 10.0 + rng.normal(0, 2.0, blob.shape)
            handle.write(rows.astype(">f4").tobytes())
        written = handle.tell()
        handle.write(b"\0" * (-written % 2880))  # FITS files come in 2880-byte blocks
    return path


def _sparse_blob(side: int, peak: float, dtype: str):
    """SYNTHETIC: a side x side array of zeros with one exponential blob (radius about 100 px)
    in the middle; zeros are most of it, so it compresses a thousand times over."""
    import numpy as np

    values = np.zeros((side, side), dtype)
    half = min(100, side // 2)
    ys, xs = np.mgrid[-half:half, -half:half].astype(np.float32)
    blob = peak * np.exp(-np.sqrt(xs * xs + (ys / 0.7) ** 2) / (half / 4))
    c = side // 2
    values[c - half:c + half, c - half:c + half] = blob.astype(dtype)
    return values


def write_float_tiff(path: Path, side: int) -> Path:
    """SYNTHETIC: a float32 TIFF, deflate-compressed (7000 px: 49 megapixels in ~400 KB)."""
    from PIL import Image

    Image.fromarray(_sparse_blob(side, 1.0, "float32"), "F").save(
        path, compression="tiff_adobe_deflate")
    return path


def write_deep_png(path: Path, side: int) -> Path:
    """SYNTHETIC: a 16-bit greyscale PNG (7000 px: 49 megapixels in ~95 KB)."""
    from PIL import Image

    Image.fromarray(_sparse_blob(side, 60000.0, "uint16")).save(path, optimize=True)
    return path


CASES = {
    # name: (writer, file name, default side, default sessions)
    "fits": (write_synthetic_fits, "synthetic_galaxy.fits", 6000, 3),
    "float-tiff": (write_float_tiff, "synthetic_float.tif", 7000, 4),
    "deep-png": (write_deep_png, "synthetic_deep.png", 7000, 4),
}


def write_small_png(path: Path) -> Path:
    sys.path.insert(0, str(REPO))
    from tests.conftest import draw_galaxy

    draw_galaxy("spiral", 160, seed=3).save(path)
    return path


# --- the server -----------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(port: int, log: Path) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true",
           "--server.fileWatcherType", "none", "--server.port", str(port),
           "--server.address", "127.0.0.1", "--browser.gatherUsageStats", "false"]
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, cwd=REPO, stdout=out, stderr=subprocess.STDOUT,
                                env={**os.environ, "PYTHONUNBUFFERED": "1"},
                                start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 120
    while time.time() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"streamlit exited:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as reply:
                if reply.status == 200:
                    return proc
        except OSError:
            time.sleep(0.5)
    proc.kill()
    raise SystemExit("streamlit did not start within 120 s")


def process_tree(pid: int) -> list[int]:
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        for task in Path(f"/proc/{current}/task").glob("*"):
            try:
                todo += [int(c) for c in (task / "children").read_text().split()]
            except OSError:
                pass
    return found


def rss_bytes(pid: int) -> int:
    """Resident memory of ``pid`` and its children."""
    try:
        import psutil
    except ImportError:
        psutil = None
    if psutil is not None:
        try:
            proc = psutil.Process(pid)
            return sum(p.memory_info().rss for p in [proc, *proc.children(recursive=True)])
        except psutil.Error:
            return 0
    total = 0
    for member in process_tree(pid):
        try:
            for line in Path(f"/proc/{member}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
        except OSError:
            pass
    return total


class Sampler(threading.Thread):
    def __init__(self, pid: int, every: float = 0.2):
        super().__init__(daemon=True)
        self.pid, self.every = pid, every
        self.samples: list[tuple[float, int]] = []
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.is_set():
            self.samples.append((time.time(), rss_bytes(self.pid)))
            time.sleep(self.every)

    def between(self, start: float, end: float) -> list[int]:
        return [r for t, r in self.samples if start <= t <= end]


# --- the browser ----------------------------------------------------------------------------------
async def classify_in_page(context, url: str, file: Path, label: str, log: list[str]) -> float:
    page = await context.new_page()
    await page.add_init_script(QUEUE_WATCH)
    await page.goto(url)
    await page.wait_for_selector('[data-testid="stSidebar"]', timeout=120_000)
    await page.get_by_text("Classify a galaxy").wait_for(timeout=120_000)
    await page.wait_for_selector('[data-testid="stFileUploader"] input[type="file"]',
                                 state="attached", timeout=120_000)
    start = time.time()
    await page.set_input_files('[data-testid="stFileUploader"] input[type="file"]', str(file))
    # the answer line (dashboard/verdict.py), drawn above the pictures as soon as it is known,
    # or the page's error for a file it refuses (a picture over the pixel limit)
    verdict = page.locator('.st-key-verdict h3, [data-testid="stAlertContentError"]').first
    await verdict.wait_for(timeout=ANSWER_TIMEOUT_MS)
    answer = " ".join((await verdict.inner_text()).split())
    seconds = time.time() - start
    # the rest of the page (Grad-CAM, survey-matching views) is drawn after the answer
    await page.wait_for_function(
        "!document.querySelector('[data-testid=\"stStatusWidget\"]')",
        timeout=ANSWER_TIMEOUT_MS)
    done = time.time() - start
    queued = await page.evaluate("!!window.__queued")
    log.append(f"  {label}: {answer} after {seconds:.1f} s, page complete after {done:.1f} s"
               + (" (was queued)" if queued else ""))
    return seconds


async def drive(url: str, files: list[Path], small: Path, settle: float,
                sampler: Sampler) -> dict[str, float]:
    from playwright.async_api import async_playwright

    marks: dict[str, float] = {}
    log: list[str] = []
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        # warm-up: one session loads the model and classifies a small image, then closes
        warm = await browser.new_context()
        await classify_in_page(warm, url, small, "warm-up (small PNG)", log)
        await warm.close()
        await asyncio.sleep(settle)
        marks["baseline_start"] = time.time()
        await asyncio.sleep(3)
        marks["baseline_end"] = time.time()
        contexts = [await browser.new_context() for _ in files]
        marks["upload_start"] = time.time()
        await asyncio.gather(*(classify_in_page(c, url, f, f"session {i + 1}", log)
                               for i, (c, f) in enumerate(zip(contexts, files))))
        marks["answers"] = time.time()
        for context in contexts:
            await context.close()
        marks["closed"] = time.time()
        await browser.close()
    await asyncio.sleep(settle)
    marks["after_start"] = time.time()
    await asyncio.sleep(2)
    marks["after_end"] = time.time()
    print("\n".join(log))
    return marks


def gb(n: float) -> str:
    return f"{n / 1e9:.2f} GB"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--case", choices=list(CASES), default="fits",
                        help="which file every session uploads (see the module docstring)")
    parser.add_argument("--sessions", type=int, help="concurrent uploads (default: 3 for "
                        "fits, 4 for the small files that decode big)")
    parser.add_argument("--side", type=int, help="image side in pixels (default: the case's)")
    parser.add_argument("--write-only", action="store_true",
                        help="write the case's file, print its size and exit")
    parser.add_argument("--settle", type=float, default=10.0,
                        help="seconds to wait after closing pages before measuring")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    parser.add_argument("--trace", type=Path, help="write every RSS sample (t, bytes) as CSV")
    args = parser.parse_args()
    writer, name, side, sessions = CASES[args.case]
    args.side = args.side or side
    args.sessions = args.sessions or sessions
    if args.write_only:
        with tempfile.TemporaryDirectory(prefix="bench_upload_") as folder:
            written = writer(Path(folder) / name, args.side)
            print(f"{args.case}: {name}, {args.side}x{args.side} "
                  f"({args.side ** 2 / 1e6:.1f} megapixels), {written.stat().st_size / 1e3:.0f} KB")
        return 0
    if not Path(CHROMIUM).is_file():
        sys.exit(f"{CHROMIUM} not found (apt-get install chromium)")

    tmp = Path(tempfile.mkdtemp(prefix="bench_upload_"))
    fits_path = writer(tmp / name, args.side)
    small = write_small_png(tmp / "small_spiral.png")
    # one copy per session, so the browser really sends each file (same name, same content)
    files = []
    for i in range(args.sessions):
        folder = tmp / f"s{i}"
        folder.mkdir()
        target = folder / fits_path.name
        os.link(fits_path, target)
        files.append(target)
    print(f"synthetic {args.case}: {fits_path.stat().st_size / 1e6:.1f} MB "
          f"({args.side}x{args.side}), {args.sessions} concurrent sessions")

    port = free_port()
    log = tmp / "streamlit.log"
    server = start_server(port, log)
    sampler = Sampler(server.pid)
    sampler.start()
    try:
        marks = asyncio.run(drive(f"http://127.0.0.1:{port}", files, small, args.settle,
                                  sampler))
    finally:
        sampler.stopped.set()
        sampler.join(timeout=2)
        server.terminate()
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
    baseline = sorted(sampler.between(marks["baseline_start"], marks["baseline_end"]))
    baseline_rss = baseline[len(baseline) // 2]
    peak = max(sampler.between(marks["upload_start"], marks["closed"]))
    after = sorted(sampler.between(marks["after_start"], marks["after_end"]))
    after_rss = after[len(after) // 2]
    first_rss = sampler.samples[0][1]

    print(f"server at start:          {gb(first_rss)}")
    print(f"idle baseline:            {gb(baseline_rss)}  (model loaded, warm-up session closed)")
    print(f"peak during uploads:      {gb(peak)}  (+{gb(peak - baseline_rss)})")
    print(f"after close (+{args.settle:.0f} s):     {gb(after_rss)}  "
          f"(+{(after_rss - baseline_rss) / 1e6:.0f} MB over baseline)")
    print(f"answers after:            {marks['answers'] - marks['upload_start']:.1f} s")
    ok_peak = peak < PEAK_TARGET
    ok_after = after_rss - baseline_rss < AFTER_TARGET
    print(f"target peak < {gb(PEAK_TARGET)}:          {'PASS' if ok_peak else 'FAIL'}")
    print(f"target after close < baseline + {AFTER_TARGET / 1e6:.0f} MB: "
          f"{'PASS' if ok_after else 'FAIL'}")
    if args.trace:
        t0 = sampler.samples[0][0]
        lines = ["seconds,rss_bytes,phase"]
        for t, r in sampler.samples:
            phase = max((name for name, at in marks.items() if at <= t),
                        key=lambda name: marks[name], default="start")
            lines.append(f"{t - t0:.2f},{r},{phase}")
        args.trace.write_text("\n".join(lines) + "\n")
        print(f"trace: {args.trace}")
    if args.keep:
        print(f"kept {tmp} (server log: {log})")
    else:
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
    return 0 if ok_peak and ok_after else 1


if __name__ == "__main__":
    sys.exit(main())

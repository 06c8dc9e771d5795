"""How long a student waits for the reveal when a whole class answers at once.

Starts the dashboard (``streamlit run app.py``, loopback only, a temporary classroom database),
makes a class of 20 galaxies the way the Teacher page does (its Grad-CAM maps computed once,
timed), joins 30 students and opens 30 sessions on the Classroom page, and the teacher's
results page, whose live part refreshes itself every 3 s meanwhile. The sessions speak
Streamlit's own websocket protocol, as a browser tab does (the BackMsg a click sends, the
ForwardMsgs of the rerun), so 30 of them are cheap for the client and the server does exactly
the work 30 browsers would give it. Each round every session clicks an answer at the same
moment (all 30 clicks within a few ms: the worst case), and then "Next galaxy".

Measured per click: from sending the click to having the reveal, i.e. the volunteers' and the
network's answers (the reveal's text) and the Grad-CAM picture, fetched over HTTP as the browser
fetches it. Printed: median, p95 and max over all reveals, and the same for "Next galaxy".

    .venv/bin/python benchmarks/bench_classroom.py [--students 30] [--rounds 5]

Needs the shipped model and the prepared data (``make prepare``); nothing leaves 127.0.0.1.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import shutil
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.test_browser import QUIET, streamlit_app  # noqa: E402  (starts and stops the app)

REVEAL_TEXT = "**The volunteers** said"


def make_class(db: Path, students: int,
               galaxies: int) -> tuple[str, str, list[str], float]:
    """A class made as the Teacher page makes one; its code, its teacher key, one session
    token per student, and the seconds its Grad-CAM maps took."""
    import torch

    from galaxy_core.classroom.maps import with_cams
    from galaxy_core.classroom.sets import as_galaxies, choose, test_galaxies, with_images
    from galaxy_core.classroom.store import ClassroomStore
    from galaxy_core.data.prepared import open_prepared
    from galaxy_core.locations import model_dir, prepared_dir
    from galaxy_core.model.store import load_model

    torch.set_num_threads(min(2, os.cpu_count() or 1))
    data = open_prepared(prepared_dir())
    table = with_images(data, test_galaxies(data, model_dir()))
    chosen = as_galaxies(choose(table, "balanced", galaxies, seed=15))
    loaded = load_model(model_dir())
    start = time.perf_counter()
    chosen = with_cams(loaded, data, chosen)
    seconds = time.perf_counter() - start
    store = ClassroomStore(db)
    info = store.create_class("Benchmark class", "balanced", galaxies, str(model_dir()), chosen)
    tokens = [secrets.token_urlsafe(16) for _ in range(students)]
    for i, token in enumerate(tokens):
        store.join(info.code, f"student {i + 1}", token)
    return info.code, info.teacher_key, tokens, seconds


class Session:
    """One browser tab on a page (the Classroom page unless said), speaking Streamlit's
    websocket protocol."""

    def __init__(self, url: str, query: str, page: str = "classroom") -> None:
        self.url, self.query, self.page = url, query, page
        self.buttons: dict[str, str] = {}
        self.auto_rerun: tuple[float, str] | None = None
        self.ws = None

    async def open(self) -> None:
        from websockets.asyncio.client import connect

        host = self.url.split("//", 1)[1]
        self.ws = await connect(f"ws://{host}/_stcore/stream", subprotocols=["streamlit"],
                                origin=self.url, max_size=None, compression=None,
                                proxy=None, open_timeout=60)
        await self.rerun([])

    async def rerun(self, widgets: list, fragment: str = "") -> tuple[float, float]:
        """Send a rerun (with these widget states; of one fragment only when ``fragment`` is
        given, as the browser does for ``run_every``) and read its messages; (seconds to the
        reveal, seconds to the end of the run), the first NaN when no reveal came."""
        from streamlit.proto.BackMsg_pb2 import BackMsg
        from streamlit.proto.ForwardMsg_pb2 import ForwardMsg

        msg = BackMsg()
        msg.rerun_script.query_string = self.query
        msg.rerun_script.page_name = self.page
        msg.rerun_script.widget_states.widgets.extend(widgets)
        if fragment:
            msg.rerun_script.fragment_id = fragment
            msg.rerun_script.is_auto_rerun = True
        start = time.perf_counter()
        await self.ws.send(msg.SerializeToString())
        self.buttons = {}
        text_at = image_url = None
        while True:
            raw = await asyncio.wait_for(self.ws.recv(), timeout=120)
            forward = ForwardMsg()
            forward.ParseFromString(raw)
            kind = forward.WhichOneof("type")
            if kind == "delta" and forward.delta.WhichOneof("type") == "new_element":
                element = forward.delta.new_element
                what = element.WhichOneof("type")
                if what == "button":
                    self.buttons[element.button.label] = element.button.id
                elif what == "markdown" and REVEAL_TEXT in element.markdown.body:
                    text_at = time.perf_counter()
                elif what == "imgs" and text_at is not None and image_url is None:
                    image_url = element.imgs.imgs[0].url  # the Grad-CAM, after the text
            elif kind == "auto_rerun":
                self.auto_rerun = (forward.auto_rerun.interval, forward.auto_rerun.fragment_id)
            elif kind == "script_finished":
                break
        done = time.perf_counter()
        if text_at is None or image_url is None:
            return float("nan"), done - start
        await asyncio.to_thread(self.fetch, image_url)  # the browser's GET of the picture
        return time.perf_counter() - start, done - start

    def fetch(self, url: str) -> None:
        with urllib.request.urlopen(self.url + ("" if url.startswith("/") else "/") + url,
                                    timeout=60) as reply:
            reply.read()

    async def click(self, label: str) -> tuple[float, float]:
        from streamlit.proto.WidgetStates_pb2 import WidgetState

        state = WidgetState(id=self.buttons[label], trigger_value=True)
        return await self.rerun([state])


async def watch(teacher: Session, stop: asyncio.Event, refreshes: list[float]) -> None:
    """The teacher's open results page: its fragment reruns every few seconds, as the browser
    asks for it."""
    interval, fragment = teacher.auto_rerun or (3.0, "")
    while fragment and not stop.is_set():
        try:
            await asyncio.wait_for(stop.wait(), timeout=interval)
        except asyncio.TimeoutError:
            refreshes.append((await teacher.rerun([], fragment=fragment))[1])


async def lesson(url: str, code: str, teacher_key: str, tokens: list[str],
                 rounds: int) -> dict[str, list[float]]:
    sessions = [Session(url, f"code={code}&student={t}") for t in tokens]
    warm = Session(url, f"code={code}&student={tokens[0]}")
    await warm.open()  # the first run after a start loads the app's modules
    await warm.ws.close()
    teacher = Session(url, f"class={teacher_key}", page="teacher")
    await teacher.open()
    if teacher.auto_rerun is None:
        print("warning: the teacher's page asked for no live refresh")
    stop, refreshes = asyncio.Event(), []
    watching = asyncio.create_task(watch(teacher, stop, refreshes))
    await asyncio.gather(*(s.open() for s in sessions))
    answers = ("Spiral", "Elliptical", "Can't tell")
    reveal: list[float] = []
    finished: list[float] = []
    following: list[float] = []
    for r in range(rounds):
        times = await asyncio.gather(*(s.click(answers[(i + r) % 3])
                                       for i, s in enumerate(sessions)))
        reveal += [t[0] for t in times]
        finished += [t[1] for t in times]
        nexts = await asyncio.gather(*(s.click("Next galaxy") for s in sessions))
        following += [t[1] for t in nexts]
    if teacher.auto_rerun and not refreshes:  # a short run: wait for one refresh at least
        await asyncio.sleep(teacher.auto_rerun[0] + 1)
    stop.set()
    await watching
    for s in [*sessions, teacher]:
        await s.ws.close()
    return {"reveal": reveal, "run": finished, "next": following, "teacher": refreshes}


def summary(name: str, values: list[float]) -> str:
    ok = sorted(v for v in values if v == v)
    if not ok:
        return f"{name}: no measurements"
    p95 = ok[min(len(ok) - 1, round(0.95 * (len(ok) - 1)))]
    missing = len(values) - len(ok)
    return (f"{name}: n={len(ok)} median {statistics.median(ok) * 1000:.0f} ms, p95 "
            f"{p95 * 1000:.0f} ms, max {ok[-1] * 1000:.0f} ms"
            + (f" ({missing} without a reveal)" if missing else ""))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--students", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--galaxies", type=int, default=20)
    parser.add_argument("--server-option", action="append", default=[], metavar="NAME=VALUE",
                        help="a Streamlit option for the server, e.g. runner.postScriptGC=false "
                             "(repeatable); the default is the project's .streamlit/config.toml")
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="bench_classroom_"))
    try:
        return run(args, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def run(args: argparse.Namespace, tmp: Path) -> int:
    db = tmp / "classroom.sqlite3"
    code, teacher_key, tokens, cam_seconds = make_class(db, args.students, args.galaxies)
    print(f"class {code}: {args.galaxies} galaxies, Grad-CAM maps made once in "
          f"{cam_seconds:.1f} s ({cam_seconds / args.galaxies:.2f} s each), "
          f"{args.students} students")
    env = {**os.environ, "GALAXY_CLASSROOM_DB": str(db), "GALAXY_RUNS_DIR": str(tmp / "runs")}
    if os.environ.get("BENCH_EXTRA_PATH"):
        env["PYTHONPATH"] = os.environ["BENCH_EXTRA_PATH"]
    options = (*QUIET, *(f"--{o.partition('=')[0]}={o.partition('=')[2]}"
                         for o in args.server_option))
    try:
        with streamlit_app(env, tmp / "streamlit.log", options) as (url, _):
            results = asyncio.run(lesson(url, code, teacher_key, tokens, args.rounds))
    except RuntimeError as exc:  # the server did not come up: its log says why
        print(exc)
        return 1
    print(f"{args.students} sessions clicking at the same moment, {args.rounds} rounds, "
          f"{os.cpu_count()} CPU cores" + (f", server options {' '.join(args.server_option)}"
                                           if args.server_option else "") + ":")
    print("  " + summary("answer click -> reveal (text + Grad-CAM fetched)", results["reveal"]))
    print("  " + summary("answer click -> end of the rerun", results["run"]))
    print("  " + summary("'Next galaxy' click -> next galaxy shown", results["next"]))
    print("  " + summary("the teacher's live results, one refresh", results["teacher"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())

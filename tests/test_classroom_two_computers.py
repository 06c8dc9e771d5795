"""Issue 25's classroom items in a real browser, with two computers: the teacher's (the one running
the dashboard) and a student's laptop. ``streamlit run app.py`` listens on 127.0.0.1 with its own
classroom database; Chromium contexts (separate cookies and sessions) open it from both.

How the laptop is another computer, honestly: the dashboard decides who is at the screen by the
TCP peer address of the browser's connection (``dashboard.access``), which counts loopback and
this machine's own addresses as the local computer, so a connection through the host's network
address would still be the teacher's. Here the student's contexts go through :class:`Forwarder`,
a plain byte relay in this test that opens each of their connections to the dashboard *from*
127.0.0.2: the server's socket really sees a peer other than 127.0.0.1 (no header, cookie or
parameter says so). The server is started with ``GALAXY_LOCAL_ADDRESSES=127.0.0.1``, the test-only
setting of ``dashboard.access`` that narrows "this machine" to 127.0.0.1 (it can never widen it),
so 127.0.0.2 is a visitor and 127.0.0.1 the operator. The first test checks the two really differ.

What the laptop must not get (items 1-4 and 6): the server's paths (the sidebar's data folder,
the model selector's tooltip, which named the runs folder to everyone until this test, the
model path), the Teacher page and with it making, closing and deleting classes, the Train
page's start, stop and resume buttons, a classmate's identity from a copied address. What the
teacher's screen must do: the present view shows the join code and never the teacher secret,
no address bar carries the secret after the first visit, closing and deleting ask first.

Uses the tiny synthetic model and data of test_app.py (fast classes); about a minute. Run alone
with ``pytest -m browser``.
"""

from __future__ import annotations

import os
import re
import socket
import sqlite3
import subprocess
import threading
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.test_app import assets  # noqa: F401  (assets is a fixture)
from tests.test_browser import (CHROMIUM, QUIET, SLOW, browser_context_args,  # noqa: F401
                                browser_type_launch_args, streamlit_app, wait_for_app)
from tests.test_dashboard_hostile import DEAD_PID, make_run

pytestmark = [pytest.mark.browser, pytest.mark.slow]  # about a minute

STUDENT_ADDRESS = "127.0.0.2"
"""The laptop's address as the dashboard sees it: a loopback address other than 127.0.0.1."""
VIEWPORT = {"width": 1920, "height": 1080}
"""The projector's size in the issue."""


class Forwarder:
    """A TCP relay standing for the school network between a student's laptop and the dashboard:
    it listens on ``source``:<free port> and opens each connection on to ``target`` from
    ``source``, passing the bytes unchanged both ways (HTTP and the WebSocket alike)."""

    def __init__(self, target: tuple[str, int], source: str = STUDENT_ADDRESS):
        self.target, self.source = target, source
        self.listener = socket.create_server((source, 0))
        self.listener.settimeout(0.2)
        self.port = self.listener.getsockname()[1]
        self.url = f"http://{source}:{self.port}"
        self._open: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            upstream = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                upstream.bind((self.source, 0))  # the dashboard's peer: the laptop's address
                upstream.connect(self.target)
            except OSError:
                client.close()
                upstream.close()
                continue
            self._open += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            try:
                dst.shutdown(socket.SHUT_WR)
            except OSError:
                pass

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.listener.close()
        for sock in self._open:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()


@pytest.fixture(scope="module")
def server(assets, tmp_path_factory):  # noqa: F811
    if not CHROMIUM.is_file():
        pytest.skip(f"{CHROMIUM} not found: apt-get install -y chromium chromium-driver")
    try:
        with socket.create_server((STUDENT_ADDRESS, 0)):
            pass
    except OSError as exc:
        pytest.skip(f"cannot listen on {STUDENT_ADDRESS} ({exc}): no second loopback address")
    tmp = tmp_path_factory.mktemp("two_computers")
    runs, data = tmp / "runs", tmp / "server_data_folder"
    data.mkdir()
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "GALAXY_RUNS_DIR": str(runs),
           "GALAXY_CLASSROOM_DB": str(tmp / "classroom.sqlite3"), "GALAXY_DATA": str(data),
           "GALAXY_MODEL_DIR": str(assets["model"]), "GALAXY_PREPARED": str(assets["prepared"]),
           "GALAXY_LOCAL_ADDRESSES": "127.0.0.1"}
    env.pop("GALAXY_ALLOW_TRAINING", None)  # the default of `make run`
    # Two runs for the Train page: one whose process is alive (Stop), one stopped (Resume).
    sleeper = subprocess.Popen(["sleep", "900"])
    make_run(runs, "busy", "training", sleeper.pid)
    make_run(runs, "paused", "training", DEAD_PID)
    log = tmp / "streamlit.log"
    try:
        with streamlit_app(env, log, QUIET) as (url, _):
            port = urlsplit(url).port
            relay = Forwarder(("127.0.0.1", port))
            try:
                yield {"url": url, "elsewhere": relay.url, "db": tmp / "classroom.sqlite3",
                       "runs": str(runs), "model": str(assets["model"]), "log": log,
                       "paths": [str(tmp), str(data), str(runs), str(assets["model"]),
                                 str(assets["prepared"])]}
            finally:
                relay.close()
    finally:
        sleeper.terminate()
        sleeper.wait(timeout=10)


@pytest.fixture
def computers(server, browser):
    """``open(where, path)``: a page in a new browser context (a new computer's browser) on
    ``where`` ("local": the teacher's computer; "elsewhere": a student's laptop)."""
    contexts = []

    def open_page(where: str, path: str = ""):
        context = browser.new_context(viewport=VIEWPORT)
        contexts.append(context)
        page = context.new_page()
        page.goto(f"{server['url' if where == 'local' else 'elsewhere']}/{path}")
        wait_for_app(page)
        return page

    yield open_page
    for context in contexts:
        context.close()


# --- helpers ------------------------------------------------------------------------------------
def main(page):
    return page.locator('[data-testid="stMain"]')


def no_exception(page) -> None:
    assert page.locator('[data-testid="stException"]').count() == 0
    assert page.get_by_text("Traceback").count() == 0


def button(page, name: str):
    return page.get_by_role("button", name=name, exact=True)


def classes(db) -> dict[str, dict]:
    """The classes in the server's database, by name."""
    with sqlite3.connect(db) as con:
        con.row_factory = sqlite3.Row
        return {r["name"]: dict(r) for r in con.execute("SELECT * FROM classes")}


def make_class(page, db, name: str) -> dict:
    """Make a class of 2 galaxies on the Teacher page of ``page``; its database row."""
    page.goto(re.sub(r"/[^/]*$", "/teacher", page.url.split("?")[0]))
    chooser = main(page).locator('[data-testid="stSelectbox"]').filter(has_text="Class")
    chooser.wait_for(timeout=SLOW)  # drawn whether or not there are classes already
    wait_for_app(page)
    chooser.click()
    page.get_by_role("option", name="New class…").click()
    page.get_by_label("Class name", exact=True).wait_for(timeout=SLOW)
    wait_for_app(page)
    page.get_by_label("Class name", exact=True).fill(name)
    page.get_by_label("Galaxies per student", exact=True).fill("2")
    button(page, "Create the class").click()
    main(page).get_by_text("Join code", exact=True).wait_for(timeout=SLOW)
    wait_for_app(page)
    no_exception(page)
    return classes(db)[name]


def lock_message(page):
    return main(page).get_by_text("This page belongs to the teacher", exact=False)


# --- the tests ----------------------------------------------------------------------------------
def test_the_laptop_sees_no_server_paths_and_the_teachers_computer_does(server, computers):
    """Item 6, and the proof that the two contexts are two computers to the dashboard."""
    teacher = computers("local", "teacher")
    laptop = computers("elsewhere", "teacher")
    sidebar = teacher.locator('[data-testid="stSidebar"]')
    sidebar.get_by_text("Data:", exact=False).wait_for(timeout=SLOW)
    assert "server_data_folder" in sidebar.inner_text()
    laptop_sidebar = laptop.locator('[data-testid="stSidebar"]')
    laptop_sidebar.get_by_text("Model", exact=True).wait_for(timeout=SLOW)
    lock_message(laptop).wait_for(timeout=SLOW)  # app.py draws the page after the sidebar
    wait_for_app(laptop)
    for page in (teacher, laptop):
        no_exception(page)
    assert laptop_sidebar.get_by_text("Data:", exact=False).count() == 0
    html = laptop.content()
    for path in server["paths"]:
        assert path not in html, path
    # The model selector's tooltip (drawn only on hover) named the runs folder to everyone.
    assert server["runs"] in tooltip(teacher)
    assert tooltip(laptop) == "The shipped model and every finished run in the runs folder."


def tooltip(page) -> str:
    """The text of the sidebar model selector's help tooltip, shown by hovering its icon."""
    page.locator('[data-testid="stSidebar"] [data-testid="stTooltipIcon"]').first.hover()
    content = page.locator('[data-testid="stTooltipContent"]')
    content.wait_for(timeout=30_000)
    text = content.inner_text().strip()
    page.mouse.move(800, 900)
    content.wait_for(state="detached", timeout=30_000)
    return text


def test_the_laptop_cannot_make_a_class_or_see_the_teacher_page(server, computers):
    """Items 1 and 3: the Teacher page is locked for the laptop; the teacher's computer makes
    classes there."""
    teacher = computers("local", "teacher")
    lesson = make_class(teacher, server["db"], "Year 9")
    laptop = computers("elsewhere", "teacher")
    lock_message(laptop).wait_for(timeout=SLOW)
    no_exception(laptop)
    assert button(laptop, "Create the class").count() == 0
    assert laptop.get_by_label("Class name", exact=True).count() == 0
    html = laptop.content()
    assert lesson["code"] not in html and lesson["teacher_key"] not in html
    for name in ("Close the class…", "Delete the class…"):
        assert button(laptop, name).count() == 0
        assert button(teacher, name).count() == 1


def test_the_laptop_cannot_start_stop_or_resume_training(server, computers):
    """Item 2, with GALAXY_ALLOW_TRAINING unset as `make run` leaves it."""
    pages = {where: computers(where, "train") for where in ("local", "elsewhere")}
    for page in pages.values():  # the busy run is watched: this line comes after its buttons
        main(page).get_by_text("The loss and accuracy curves appear after the first epoch",
                               exact=False).wait_for(timeout=SLOW)
        wait_for_app(page)
        no_exception(page)
    teacher, laptop = pages["local"], pages["elsewhere"]
    main(laptop).get_by_text("epoch 2 of 5", exact=False).first.wait_for()  # the run is shown
    assert button(teacher, "Stop").count() == 1
    assert teacher.get_by_text("Start a new run", exact=True).count() == 1
    assert button(laptop, "Stop").count() == 0
    assert laptop.get_by_text("Start a new run", exact=True).count() == 0
    assert button(laptop, "Start training").count() == 0
    main(laptop).get_by_text("belong to the computer running the dashboard",
                             exact=False).wait_for()
    for page in (teacher, laptop):  # watch the stopped run
        page.locator('[data-testid="stSelectbox"]').filter(has_text="Watch").click()
        page.get_by_role("option", name="paused").click()
        main(page).get_by_text("Stopped.", exact=False).wait_for(timeout=SLOW)
        wait_for_app(page)
    assert button(teacher, "Resume").count() == 1
    assert button(laptop, "Resume").count() == 0


def test_the_projected_view_shows_the_join_code_and_never_the_secret(server, computers):
    """Item 1: the teacher link is folded away on the results, and absent from the present
    view; the teacher's address bar never held it."""
    teacher = computers("local", "teacher")
    lesson = classes(server["db"]).get("Year 9") or make_class(teacher, server["db"], "Year 9")
    teacher.reload()
    wait_for_app(teacher)
    main(teacher).get_by_text(lesson["code"], exact=True).wait_for(timeout=SLOW)
    assert "class=" not in teacher.url
    assert server["model"] in main(teacher).inner_text()  # the local computer sees paths
    assert lesson["teacher_key"] not in main(teacher).inner_text(), "folded away"
    teacher.get_by_text("Your teacher link (private: never project it)").click()
    main(teacher).get_by_text(lesson["teacher_key"], exact=False).wait_for()

    teacher.get_by_text("Present to the class", exact=True).click()
    # The results view has the QR too: the present view is there once the results are gone.
    teacher.get_by_text("Your teacher link", exact=False).wait_for(state="detached",
                                                                   timeout=SLOW)
    wait_for_app(teacher)
    main(teacher).get_by_text("Scan to join").wait_for(timeout=SLOW)
    no_exception(teacher)
    assert main(teacher).get_by_text(lesson["code"], exact=True).is_visible()
    assert lesson["teacher_key"] not in teacher.content()
    assert teacher.get_by_text("Your teacher link", exact=False).count() == 0
    assert teacher.locator('[data-testid="stMetric"]').count() == 0
    for name in ("Close the class…", "Delete the class…"):
        assert button(teacher, name).count() == 0


def test_a_students_address_does_not_carry_the_student(server, computers):
    """Item 4: the laptop's address holds the class code only; copied into another browser it
    makes nobody that student, and neither does an old-style link with the resume token."""
    db = server["db"]
    lesson = classes(db).get("Year 9") or make_class(computers("local"), db, "Year 9")
    code = lesson["code"]
    ada = computers("elsewhere", f"classroom?code={code}")
    ada.get_by_label("Nickname", exact=True).fill("Ada")
    button(ada, "Join the class").click()
    main(ada).get_by_text("Spiral or elliptical?").wait_for(timeout=SLOW)
    button(ada, "Spiral").click()
    main(ada).get_by_text("The volunteers", exact=False).first.wait_for(timeout=SLOW)
    wait_for_app(ada)
    no_exception(ada)
    assert parse_qs(urlsplit(ada.url).query) == {"code": [code]}
    with sqlite3.connect(db) as con:
        (token,) = con.execute("SELECT session FROM students WHERE nickname = 'Ada' AND "
                               "class_id = ?", (lesson["id"],)).fetchone()
    assert token and token not in ada.url and token not in ada.content()

    for address in (ada.url, f"{server['elsewhere']}/classroom?code={code}&student={token}"):
        other = computers("elsewhere")
        other.goto(address)
        wait_for_app(other)
        button(other, "Join the class").wait_for(timeout=SLOW)
        other.wait_for_url(lambda url: "student=" not in url, timeout=SLOW)
        no_exception(other)
        assert main(other).get_by_text("you are", exact=False).count() == 0
        assert token not in other.url
        other.get_by_label("Nickname", exact=True).fill("Ada")
        button(other, "Join the class").click()
        main(other).get_by_text("Someone in this class is already called Ada",
                                exact=False).wait_for(timeout=SLOW)
        assert main(other).get_by_text("Spiral or elliptical?").count() == 0


def test_a_teacher_link_elsewhere_leaves_the_address_and_closing_deleting_ask_first(
        server, computers):
    """Items 1 and 2 from a teacher's laptop: the teacher link opens the class once, its secret
    leaves the address bar at once, the address left behind opens nothing, and closing and
    deleting ask first."""
    db = server["db"]
    info = make_class(computers("local"), db, "Year 10")
    link = f"{server['elsewhere']}/teacher?class={info['teacher_key']}"
    laptop = computers("elsewhere")

    def open_link() -> None:
        laptop.goto(link)
        wait_for_app(laptop)
        laptop.wait_for_url(lambda url: "class=" not in url, timeout=SLOW)
        main(laptop).get_by_text(info["code"], exact=True).wait_for(timeout=SLOW)
        no_exception(laptop)

    open_link()
    assert info["teacher_key"] not in laptop.url
    assert "model on the server" in main(laptop).inner_text()  # item 6: not the model's path
    html = laptop.content()
    for path in server["paths"]:
        assert path not in html, path
    address = laptop.url
    student = computers("elsewhere")
    student.goto(address)  # the address bar, copied (or photographed)
    wait_for_app(student)
    lock_message(student).wait_for(timeout=SLOW)
    assert info["code"] not in student.content()

    laptop.reload()  # a new session: the secret is not in the address to come back with
    wait_for_app(laptop)
    lock_message(laptop).wait_for(timeout=SLOW)
    open_link()  # the bookmarked teacher link opens it again

    button(laptop, "Delete the class…").click()
    main(laptop).get_by_text("for good", exact=False).wait_for(timeout=SLOW)
    assert button(laptop, "Yes, delete it").is_visible()
    assert "Year 10" in classes(db), "one click deletes nothing"
    button(laptop, "Cancel").click()
    button(laptop, "Close the class…").wait_for(timeout=SLOW)
    assert "Year 10" in classes(db)

    button(laptop, "Close the class…").click()
    main(laptop).get_by_text("It takes no more answers", exact=False).wait_for(timeout=SLOW)
    assert classes(db)["Year 10"]["closed"] is None, "one click closes nothing"
    button(laptop, "Yes, close it").click()
    main(laptop).get_by_text("the class is closed", exact=False).wait_for(timeout=SLOW)
    assert classes(db)["Year 10"]["closed"] is not None

    button(laptop, "Delete the class…").click()
    button(laptop, "Yes, delete it").click()
    # Its key went with it: the laptop holds no class now, so it is a visitor again.
    lock_message(laptop).wait_for(timeout=SLOW)
    no_exception(laptop)
    assert "Year 10" not in classes(db)

"""Who may do what in class (issue 25, items 1-4, 6 and 15): the teacher's secret never stays in
the address bar or on the projected view, closing and deleting ask first, only the computer
running the dashboard and teachers start or stop training and make classes (a few, of bounded
size), a student's identity is never in a shareable address, server paths are shown only on
the dashboard's own computer, and look-alike nicknames are one nickname.

A visitor on another computer is simulated by the one function every page asks
(``dashboard.access.client_ip``) answering a TEST-NET address that no machine owns; under
AppTest, with no browser connection, every session is the local computer. Browser tests
(tests/test_classroom_browser.py) need Chromium."""

from __future__ import annotations

import os
import sqlite3

import pytest

from galaxy_core.classroom import limits
from galaxy_core.classroom import store as store_module
from galaxy_core.classroom.limits import VisitorQuota
from galaxy_core.classroom.names import skeleton
from galaxy_core.classroom.store import ClassroomError, ClassroomStore
from tests.test_app import assets, navigation_only, texts  # noqa: F401
from tests.test_classroom import galaxies
from tests.test_classroom_app import (LEARN, STUDENT, TEACHER, answer_button, clean, create_class, env,  # noqa: F401
                                      join, lesson, page, shown)
from tests.test_dashboard_hostile import DEAD_PID, launches, make_run, start_button  # noqa: F401

ELSEWHERE = "192.0.2.7"
"""A visitor on another computer (TEST-NET-1: documentation only, never a machine's own)."""


@pytest.fixture
def remote(monkeypatch):
    """Every page now believes the browser is on another computer."""
    from dashboard import access

    monkeypatch.setattr(access, "client_ip", lambda: ELSEWHERE)


def everything(at) -> str:
    """All the page holds, code blocks and expanders' insides included."""
    return "\n".join([shown(at)] + [c.value for c in at.code])


@pytest.fixture
def store(tmp_path) -> ClassroomStore:
    return ClassroomStore(tmp_path / "classroom.sqlite3")


# --- item 15: look-alike nicknames ------------------------------------------------------------
@pytest.mark.parametrize("first,second", [
    ("Ada", "\u0410da"),           # Cyrillic capital A
    ("ada", "\u0430d\u0430"),      # Cyrillic small a, twice
    ("Ada", "\uff21\uff24\uff21"),  # full-width ADA (NFKC)
    ("Nico", "\u039dico"),         # Greek capital Nu
    ("BOB", "\u0412\u041e\u0412"),  # Cyrillic VE, O, VE
    ("AlI", "All"),                # capital I beside small l
    ("Leo1", "Leol"),              # digit 1 beside small l
    ("Comet Kid", "comet  kid"),
    ("José", "Jose"),
])
def test_a_look_alike_nickname_is_refused_in_the_same_class(store, first, second):
    info = store.create_class("Year 9", "balanced", 6, "m", galaxies(6))
    store.join(info.code, first, session="tab-1")
    assert skeleton(first) == skeleton(second)
    with pytest.raises(ClassroomError, match=f"already called {first}"):
        store.join(info.code, second, session="tab-2")
    assert [s["nickname"] for s in store.students(info.id)] == [first]


@pytest.mark.parametrize("first,second", [("Ali", "All"), ("Ada", "Eve"), ("Mia", "Mila"),
                                          ("Юра", "Юля")])
def test_different_nicknames_stay_different(store, first, second):
    info = store.create_class("Year 9", "balanced", 6, "m", galaxies(6))
    store.join(info.code, first, session="tab-1")
    store.join(info.code, second, session="tab-2")
    assert len(store.students(info.id)) == 2


def test_an_older_file_with_case_folded_keys_still_refuses_look_alikes(store):
    """Rows written before skeletons (nickname_key = casefold) are compared by skeleton too."""
    info = store.create_class("Year 9", "balanced", 6, "m", galaxies(6))
    with sqlite3.connect(store.path) as db:
        db.execute("INSERT INTO students (class_id, nickname, nickname_key, session, joined) "
                   "VALUES (?, 'AlI', 'ali', 'old-tab', 0)", (info.id,))
    with pytest.raises(ClassroomError, match="already called AlI"):
        store.join(info.code, "All", session="tab-2")
    with pytest.raises(ClassroomError, match="already called Ali"):  # its old key
        store.join(info.code, "Ali", session="tab-3")


# --- item 3: bounded classes ------------------------------------------------------------------
def test_open_and_stored_classes_are_bounded(store, monkeypatch):
    monkeypatch.setattr(store_module, "MAX_OPEN_CLASSES", 2)
    monkeypatch.setattr(store_module, "MAX_STORED_CLASSES", 3)
    first = store.create_class("a", "balanced", 3, "m", galaxies(3))
    store.create_class("b", "balanced", 3, "m", galaxies(3))
    with pytest.raises(ClassroomError, match="already has 2 open classes"):
        store.check_room()
    with pytest.raises(ClassroomError, match="already has 2 open classes"):
        store.create_class("c", "balanced", 3, "m", galaxies(3))
    store.close_class(first.id)
    store.create_class("c", "balanced", 3, "m", galaxies(3))
    store.close_class(store.find_class(store.list_classes()[0].code).id)
    with pytest.raises(ClassroomError, match="already keeps 3 classes"):
        store.create_class("d", "balanced", 3, "m", galaxies(3))
    store.delete_class(first.id)
    store.create_class("d", "balanced", 3, "m", galaxies(3))
    assert len(store.list_classes()) == 3


def test_a_class_holds_at_most_max_target_galaxies(store):
    assert limits.MAX_TARGET <= 50
    with pytest.raises(ClassroomError, match=f"at most {limits.MAX_TARGET} galaxies"):
        store.create_class("big", "balanced", 200, "m", galaxies(limits.MAX_TARGET + 1))
    assert not store.list_classes()
    info = store.create_class("ok", "balanced", 200, "m", galaxies(limits.MAX_TARGET))
    assert info.target == limits.MAX_TARGET


def test_a_class_holds_at_most_max_students(store, monkeypatch):
    monkeypatch.setattr(store_module, "MAX_STUDENTS", 2)
    info = store.create_class("a", "balanced", 3, "m", galaxies(3))
    store.join(info.code, "Ada", session="1")
    store.join(info.code, "Bea", session="2")
    with pytest.raises(ClassroomError, match="This class is full"):
        store.join(info.code, "Cy", session="3")
    assert store.join(info.code, "Ada", session="1")  # a student already in still comes back


def test_visitor_quota_counts_per_visitor_within_the_window():
    quota = VisitorQuota(limit=2, window=100.0)
    assert quota.take("a", now=0) and quota.take("a", now=10)
    assert not quota.take("a", now=20), "third in the window"
    assert quota.take("b", now=20), "another visitor has its own count"
    quota.give_back("a")
    assert quota.take("a", now=30)
    assert not quota.take("a", now=99)
    assert quota.take("a", now=101), "the first one has left the window"


# --- item 4: the student's token, and the teacher letting a student back in --------------------
def test_let_back_in_moves_the_student_to_the_next_browser_once(store):
    info = store.create_class("a", "balanced", 3, "m", galaxies(3))
    ada = store.join(info.code, "Ada", session="tab-1")
    store.answer(ada, 0, "spiral")
    with pytest.raises(ClassroomError, match="ask your teacher to let you back in"):
        store.join(info.code, "Ada", session="tab-2")
    assert store.let_back_in(info.id, "Ada")
    again = store.join(info.code, "ada", session="tab-2")
    assert again == ada and store.answers_of(again) == {0: "spiral"}
    with pytest.raises(ClassroomError, match="already called Ada"):  # once, not for everyone
        store.join(info.code, "Ada", session="tab-3")
    assert store.student_for_session(info.id, "tab-1") is None
    assert not store.let_back_in(info.id, "Nobody")


# --- the one decision: is this the dashboard's own computer? -----------------------------------
@pytest.mark.parametrize("address,local", [
    (None, True), ("127.0.0.1", True), ("127.0.1.1", True), ("::1", True),
    ("::ffff:127.0.0.1", True), (ELSEWHERE, False), ("2001:db8::7", False),
    ("0.0.0.0", False), ("not an address", False), ("", False),
])
def test_is_local_address(address, local):
    from dashboard.access import is_local_address

    assert is_local_address(address) is local


@pytest.mark.parametrize("only,address,local", [
    (None, "127.0.0.2", True),                      # unset: every loopback address is local
    ("127.0.0.1", "127.0.0.2", False),              # narrowed, as the two-computer test runs
    ("127.0.0.1", None, True),                      # Streamlit's 127.0.0.1 and ::1
    ("127.0.0.1, 127.0.0.2", "127.0.0.2", True),
    (ELSEWHERE, ELSEWHERE, False),                  # it never makes another computer local
    ("", "127.0.0.1", False), ("not an address", "127.0.1.1", False),
])
def test_local_addresses_can_only_be_narrowed(monkeypatch, only, address, local):
    """GALAXY_LOCAL_ADDRESSES (for tests) narrows which of this machine's addresses are the
    local computer; it cannot widen them."""
    from dashboard.access import LOCAL_ENV, is_local_address

    if only is None:
        monkeypatch.delenv(LOCAL_ENV, raising=False)
    else:
        monkeypatch.setenv(LOCAL_ENV, only)
    assert is_local_address(address) is local


def test_this_computers_own_network_address_is_local():
    from dashboard.access import is_local_address
    from dashboard.classroom import lan_address

    own = lan_address()
    if own is None:
        pytest.skip("this machine has no network address")
    assert is_local_address(own)


@pytest.mark.parametrize("value,mode", [(None, "teachers"), ("", "teachers"), ("1", "teachers"),
                                        ("local", "teachers"), ("0", "off"), ("off", "off"),
                                        ("all", "everyone"), ("ALL", "everyone")])
def test_training_mode_defaults_to_the_teachers(monkeypatch, value, mode):
    from dashboard.access import training_mode

    if value is None:
        monkeypatch.delenv("GALAXY_ALLOW_TRAINING", raising=False)
    else:
        monkeypatch.setenv("GALAXY_ALLOW_TRAINING", value)
    assert training_mode() == mode


# --- item 1: the teacher's secret -------------------------------------------------------------
def test_the_teacher_link_leaves_the_address_and_the_class_stays_open(env, lesson, remote):
    info = lesson["info"]
    assert "class" not in lesson["teacher"].query_params, "making a class puts no secret there"
    at = page(TEACHER, **{"class": info.teacher_key})
    clean(at)
    assert "class" not in at.query_params
    assert at.selectbox(key="teacher_class").value == info.id
    at.run()  # the tab goes on showing the class from its session
    clean(at)
    assert {"Students", "Answers"} <= {m.label for m in at.metric}


def test_the_projected_view_holds_the_code_and_the_qr_and_no_secret(env, lesson):
    info = lesson["info"]
    at = lesson["teacher"]
    at.context["url"] = "http://localhost:8501/teacher"  # the links need the browser's address
    at.run()
    secret = [e for e in at.expander if "private" in e.label]
    assert len(secret) == 1 and info.teacher_key in "\n".join(c.value for c in secret[0].code)
    at.toggle(key="teacher_present").set_value(True).run()
    clean(at)
    assert info.code in "\n".join(m.value for m in at.markdown)
    assert any("Scan to join" in c for image in at.image for c in image.captions)
    assert info.teacher_key not in everything(at)
    assert not at.expander and not at.metric and not at.dataframe
    assert not [b for b in at.button if b.key and b.key.startswith(("close_", "delete_"))]


def test_closing_and_deleting_ask_first(env, lesson):
    store, info, at = lesson["store"], lesson["info"], lesson["teacher"]
    at.button(key=f"close_{info.id}").click().run()
    assert any("It takes no more answers" in w.value for w in at.warning)
    assert store.class_by_id(info.id).is_open, "one click closes nothing"
    at.button(key=f"close_no_{info.id}").click().run()
    assert store.class_by_id(info.id).is_open
    at.button(key=f"close_{info.id}").click().run()
    at.button(key=f"close_yes_{info.id}").click().run()
    clean(at)
    assert not store.class_by_id(info.id).is_open
    at.button(key=f"delete_{info.id}").click().run()
    assert store.class_by_id(info.id) is not None, "one click deletes nothing"
    at.button(key=f"delete_yes_{info.id}").click().run()
    assert store.class_by_id(info.id) is None


# --- items 2 and 3: who makes classes -----------------------------------------------------------
def test_a_visitor_elsewhere_cannot_make_or_see_classes(env, lesson, remote):
    at = page(TEACHER)
    assert not at.exception
    assert not [b for b in at.get("form_submit_button") if b.label == "Create the class"]
    assert "teacher_class" not in [s.key for s in at.selectbox]
    assert lesson["info"].code not in everything(at)
    assert any("belongs to the teacher" in i.value for i in at.info)


def test_a_teacher_elsewhere_makes_classes_within_the_quota(env, lesson, remote, monkeypatch):
    from dashboard import access

    quota = VisitorQuota(limit=1)
    monkeypatch.setattr(access, "class_quota", lambda: quota)
    store, info = lesson["store"], lesson["info"]
    at = page(TEACHER, **{"class": info.teacher_key})
    at.selectbox(key="teacher_class").set_value("new").run()

    def make(name: str) -> None:
        [t for t in at.text_input if t.label == "Class name"][0].set_value(name)
        [b for b in at.get("form_submit_button") if b.label == "Create the class"][0].click()
        at.run()

    make("Year 10")
    clean(at)
    assert {c.name for c in store.list_classes()} == {"Year 9", "Year 10"}
    at.selectbox(key="teacher_class").set_value("new").run()
    make("Year 11")
    assert [e.value for e in at.error] == [
        f"A computer other than the dashboard's makes at most {limits.MAX_CLASSES_PER_VISITOR} "
        "classes an hour; make more on the computer running the dashboard."]
    assert {c.name for c in store.list_classes()} == {"Year 9", "Year 10"}


def test_the_open_class_limit_is_said_before_any_map_is_drawn(env, lesson, monkeypatch):
    from galaxy_core.classroom import maps

    monkeypatch.setattr(store_module, "MAX_OPEN_CLASSES", 1)
    drawn = []
    monkeypatch.setattr(maps, "with_cams", lambda *a, **k: drawn.append(1))
    at = create_class(name="Year 10")
    assert [e.value for e in at.error] == [
        "This server already has 1 open classes: close one on the Teacher page first."]
    assert not drawn and len(lesson["store"].list_classes()) == 1


# --- item 2: training runs ----------------------------------------------------------------------
def test_a_visitor_elsewhere_cannot_start_stop_or_resume_training(env, monkeypatch, launches,
                                                                 remote):
    from tests.test_app import app

    monkeypatch.delenv("GALAXY_ALLOW_TRAINING", raising=False)  # the default of make run
    runs = env["GALAXY_RUNS_DIR"]
    make_run(runs, "paused", "training", DEAD_PID)
    make_run(runs, "busy", "training", os.getpid())
    at = app("pages/train.py")
    assert not at.exception
    assert not at.get("form_submit_button"), "no start form"
    assert any("belong to the computer running the dashboard" in i.value for i in at.info)
    for name in ("paused", "busy"):
        at.selectbox(key="watch_run").set_value(name).run()
        assert not at.exception
        assert not [b for b in at.button if b.label in ("Resume", "Stop")], name
    assert not at.expander or all("Process output" not in e.label for e in at.expander)
    assert launches == []


@pytest.mark.parametrize("how", ["teacher key", "GALAXY_ALLOW_TRAINING=all"])
def test_a_teacher_or_an_open_server_may_train_from_elsewhere(env, lesson, monkeypatch, launches,
                                                            remote, how):
    from streamlit.testing.v1 import AppTest

    from tests.test_app import APP, TIMEOUT

    monkeypatch.delenv("GALAXY_ALLOW_TRAINING", raising=False)
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    if how == "teacher key":
        at.session_state["teacher_keys"] = [lesson["info"].teacher_key]
    else:
        monkeypatch.setenv("GALAXY_ALLOW_TRAINING", "all")
    at.run()
    at.switch_page("pages/train.py")
    at.run()
    assert not at.exception
    at.text_input(key="train_name").set_value("new")
    start_button(at).click().run()
    assert not at.exception
    assert launches == ["new"]


# --- item 4: the student's page address ---------------------------------------------------------
def test_a_copied_student_address_does_not_make_its_opener_that_student(env, lesson):
    info = lesson["info"]
    ada = page(STUDENT, code=info.code)
    join(ada, "Ada")
    answer_button(ada, "spiral").click().run()
    clean(ada)
    assert dict(ada.query_params) == {"code": info.code}, "only the code, which is public"
    token = ada.session_state["classroom_token"]
    copied = page(STUDENT, code=info.code, student=token)  # an old-style link, copied
    assert not copied.exception
    assert "you are **Ada**" not in texts(copied)
    assert [b for b in copied.get("form_submit_button") if b.label == "Join the class"]
    assert "student" not in copied.query_params
    join(copied, "Ada")
    assert [e.value for e in copied.error] == [
        "Someone in this class is already called Ada. Choose another nickname (if that is you "
        "after a reload, ask your teacher to let you back in)."]


def test_a_reloaded_student_comes_back_when_the_teacher_lets_them_in(env, lesson):
    store, info = lesson["store"], lesson["info"]
    ada = page(STUDENT, code=info.code)
    join(ada, "Ada")
    answer_button(ada, "elliptical").click().run()
    reloaded = page(STUDENT, **dict(ada.query_params))  # a new session: only the address
    join(reloaded, "Ada")
    assert "let you back in" in reloaded.error[0].value
    teacher = page(TEACHER, **{"class": info.teacher_key})
    teacher.selectbox(key=f"back_in_{info.id}").set_value("Ada")
    teacher.button(key=f"back_in_go_{info.id}").click().run()
    clean(teacher)
    join(reloaded, "Ada")
    clean(reloaded)
    assert "you are **Ada**" in texts(reloaded)
    assert "1 of 6 galaxies done" in shown(reloaded)
    assert len(store.students(info.id)) == 1


# --- item 6: server paths only for the local computer ------------------------------------------
def test_the_sidebar_shows_the_data_folder_only_on_the_local_computer(env, lesson, monkeypatch):
    from dashboard import access

    runs = str(env["GALAXY_RUNS_DIR"])
    local = page(TEACHER)
    assert any(c.value.startswith("Data:") for c in local.sidebar.caption)
    assert runs in local.sidebar.selectbox[0].help
    monkeypatch.setattr(access, "client_ip", lambda: ELSEWHERE)
    teacher = page(TEACHER, **{"class": lesson["info"].teacher_key})
    clean(teacher)
    assert not [c for c in teacher.sidebar.caption if c.value.startswith("Data:")]
    assert runs not in teacher.sidebar.selectbox[0].help  # the model selector's tooltip
    model = str(env["GALAXY_MODEL_DIR"])
    assert model not in everything(teacher) and env["GALAXY_MODEL_DIR"].name not in \
        everything(teacher)
    assert "model on the server" in everything(teacher)


def test_a_broken_model_is_explained_only_on_the_local_computer(env, tmp_path, monkeypatch):
    import shutil

    from dashboard import access

    folder = tmp_path / "broken_model"
    shutil.copytree(env["GALAXY_MODEL_DIR"], folder)
    (folder / "model.json").write_text("{ not json")
    monkeypatch.setenv("GALAXY_MODEL_DIR", str(folder))
    local = page(LEARN)
    assert any(folder.name in e.value and "cannot be loaded" in e.value for e in local.error)
    monkeypatch.setattr(access, "client_ip", lambda: ELSEWHERE)
    elsewhere = page(LEARN)
    assert not elsewhere.exception and elsewhere.error
    assert folder.name not in everything(elsewhere) and "json" not in everything(elsewhere)
    assert any("computer running the dashboard shows why" in e.value for e in elsewhere.error)


def test_a_broken_classroom_file_is_named_only_on_the_local_computer(env, tmp_path, monkeypatch):
    from dashboard import access

    foreign = tmp_path / "grades.sqlite3"
    with sqlite3.connect(foreign) as db:
        db.execute("CREATE TABLE grades (name TEXT)")
    monkeypatch.setenv("GALAXY_CLASSROOM_DB", str(foreign))
    local = page(STUDENT)
    assert any(str(foreign) in e.value for e in local.error)
    monkeypatch.setattr(access, "client_ip", lambda: ELSEWHERE)
    for path in (STUDENT, TEACHER):
        elsewhere = page(path)
        assert not elsewhere.exception
        assert elsewhere.error, path
        assert "grades" not in everything(elsewhere) and str(tmp_path) not in everything(elsewhere)
        assert any("computer running the dashboard shows why" in e.value
                   for e in elsewhere.error)

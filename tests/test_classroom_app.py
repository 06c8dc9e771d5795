"""The classroom pages under AppTest: a teacher makes a class, students join it with its code,
answer, see the reveal, come back after a reload, and are refused in one sentence (wrong code,
closed class, taken or bad nickname, missing data). Everything runs on the tiny synthetic model
and prepared data of tests/test_app.py, with the classroom database in the test's tmp folder;
the one test on the shipped model and the real data is skipped when they are absent."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from galaxy_core.classroom.store import ClassroomStore
from tests.test_app import (APP, REPO, TIMEOUT, assets, navigation_only,  # noqa: F401
                            set_env, texts)

TEACHER, STUDENT, LEARN = "pages/teacher.py", "pages/classroom.py", "pages/learn.py"


@pytest.fixture
def env(assets, tmp_path, monkeypatch, navigation_only):  # noqa: F811
    values = set_env(monkeypatch, assets, tmp_path)
    monkeypatch.setenv("GALAXY_CLASSROOM_DB", str(tmp_path / "classroom.sqlite3"))
    return {**values, "db": tmp_path / "classroom.sqlite3"}


def page(path: str, token: str | None = None, **params: str):
    """A fresh browser session opened on ``path`` with these query parameters (and, with
    ``token``, the session of a tab holding that student token)."""
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    if token is not None:
        at.session_state["classroom_token"] = token
    at.run()
    at.switch_page(path)
    at.query_params.update(params)
    at.run()
    return at


def shown(at) -> str:
    """Everything a student reads: the page's text, image captions and progress bars."""
    parts = [texts(at)]
    parts += [c for image in at.image for c in image.captions]
    parts += [p.text for p in at.get("progress")]
    return "\n".join(parts)


def clean(at) -> None:
    assert not at.exception, [e.value for e in at.exception]
    assert not [e.value for e in at.error], [e.value for e in at.error]


def create_class(name: str = "Year 9", kind: str = "balanced", target: int = 20):
    at = page(TEACHER)
    clean(at)
    chooser = [s for s in at.selectbox if s.key == "teacher_class"]
    if chooser and chooser[0].value != "new":  # the page opens on the newest class
        chooser[0].set_value("new")
        at.run()
        clean(at)
    [t for t in at.text_input if t.label == "Class name"][0].set_value(name)
    [r for r in at.radio if r.label == "Galaxy set"][0].set_value(kind)
    [n for n in at.number_input if n.label == "Galaxies per student"][0].set_value(target)
    [b for b in at.get("form_submit_button") if b.label == "Create the class"][0].click()
    at.run()
    return at


def join(at, nickname: str, code: str | None = None):
    if code is not None:
        [t for t in at.text_input if t.label == "Class code"][0].set_value(code)
    [t for t in at.text_input if t.label == "Nickname"][0].set_value(nickname)
    [b for b in at.get("form_submit_button") if b.label == "Join the class"][0].click()
    at.run()
    return at


def answer_button(at, answer: str):
    buttons = [b for b in at.button if b.key and b.key.startswith("answer_")
               and b.key.endswith("_" + answer)]
    assert buttons, "the answer buttons are shown"
    return buttons[0]


def the_class(env):
    store = ClassroomStore(env["db"])
    (info,) = store.list_classes()
    return store, info


@pytest.fixture
def lesson(env):
    """A class made on the Teacher page (the tiny data has 6 test galaxies)."""
    at = create_class()
    clean(at)
    store, info = the_class(env)
    return {"teacher": at, "store": store, "info": info}


# --- teacher ----------------------------------------------------------------------------------
def test_teacher_creates_a_class_with_stored_maps(env, lesson):
    at, store, info = lesson["teacher"], lesson["store"], lesson["info"]
    galaxies = store.galaxies(info.id)
    assert info.name == "Year 9" and info.galaxy_set == "balanced" and info.is_open
    assert len(galaxies) == info.target == 6  # all the test galaxies the tiny split has
    assert all(g.cam and g.cam.startswith(b"\x89PNG") for g in galaxies)
    assert "class" not in at.query_params  # the secret stays out of the address bar
    assert at.selectbox(key="teacher_class").value == info.id
    assert info.code in "\n".join(m.value for m in at.markdown)
    assert {"Students", "Answers", "Class vs volunteers", "Network vs volunteers"} <= {
        m.label for m in at.metric}
    assert "Nobody has joined yet" in texts(at)


def test_teacher_refuses_an_empty_class_name(env):
    at = create_class(name="   ")
    assert not at.exception
    assert [e.value for e in at.error] == ["Give the class a name of 1-80 characters."]
    assert not ClassroomStore(env["db"]).list_classes()


def test_teacher_without_prepared_data_gets_the_prepare_command(env, tmp_path, monkeypatch):
    monkeypatch.setenv("GALAXY_PREPARED", str(tmp_path / "not_prepared"))
    at = create_class()
    assert not at.exception and not at.error
    assert any("prepared galaxy data is missing" in w.value for w in at.warning)
    assert any("galaxy prepare" in c.value for c in at.code)


def test_teacher_sees_answers_live_and_can_close_and_delete(env, lesson):
    store, info = lesson["store"], lesson["info"]
    student = page(STUDENT, code=info.code)
    join(student, "Ada")
    answer_button(student, "spiral").click().run()
    clean(student)

    teacher = page(TEACHER, **{"class": info.teacher_key})
    clean(teacher)
    metrics = {m.label: m.value for m in teacher.metric}
    assert metrics["Students"] == "1" and metrics["Answers"] == "1"
    progress = teacher.dataframe[0].value
    assert list(progress["Student"]) == ["Ada"] and list(progress["Done"]) == [1]
    votes = teacher.dataframe[1].value
    assert votes["Spiral"].sum() == 1 and {"Volunteers", "Network"} <= set(votes.columns)
    assert any(b.label.startswith("Download every answer") for b in
               teacher.get("download_button"))

    teacher.button(key=f"close_{info.id}").click().run()
    teacher.button(key=f"close_yes_{info.id}").click().run()  # closing asks first too
    clean(teacher)
    assert not store.find_class(info.code).is_open
    teacher.button(key=f"delete_{info.id}").click().run()
    assert any("for good" in w.value for w in teacher.warning), "asks first"
    assert store.class_by_id(info.id) is not None
    teacher.button(key=f"delete_yes_{info.id}").click().run()
    assert not teacher.exception
    assert store.class_by_id(info.id) is None


def test_teacher_page_elsewhere_shows_only_classes_opened_by_link(env, lesson, monkeypatch):
    """Students can open the Teacher page too: away from the dashboard's own computer it lists
    only the classes made in that tab or opened with their teacher link."""
    from dashboard import access

    info = lesson["info"]
    monkeypatch.setattr(access, "client_ip", lambda: "192.0.2.7")
    stranger = page(TEACHER)
    assert not stranger.exception
    assert "teacher_class" not in [s.key for s in stranger.selectbox]  # not a teacher at all
    wrong = page(TEACHER, **{"class": "not-a-key-at-all-0000"})
    assert [e.value for e in wrong.error] == [
        "That teacher link does not open any class on this server; the class may have been "
        "deleted."]
    assert "class" not in wrong.query_params
    linked = page(TEACHER, **{"class": info.teacher_key})
    clean(linked)
    assert linked.selectbox(key="teacher_class").value == info.id


# --- students ---------------------------------------------------------------------------------
def test_student_joins_answers_and_sees_the_reveal(env, lesson):
    store, info = lesson["store"], lesson["info"]
    at = page(STUDENT, code=info.code)
    clean(at)
    assert [t for t in at.text_input if t.label == "Class code"][0].value == info.code
    join(at, "  Ada  ")
    clean(at)
    assert dict(at.query_params) == {"code": info.code}  # who the student is stays out of it
    assert "you are **Ada**" in texts(at)
    assert len(at.image) == 1, "one galaxy, before any answer: no hint of the answer"
    assert "volunteers said" not in texts(at)
    first = store.galaxies(info.id)[0]

    answer_button(at, "spiral").click().run()
    clean(at)
    page_text = shown(at)
    assert "**The volunteers** said" in page_text and "**The network** said" in page_text
    assert f"{max(first.p_spiral, 1 - first.p_spiral):.0%} sure" in page_text
    assert len(at.image) == 2, "the galaxy and its stored Grad-CAM"
    assert "show where the network looked" in page_text
    assert "1 of 6 galaxies done" in page_text
    assert "Your class so far: 1 spiral" in page_text

    at.button(key=f"next_{info.id}_0").click().run()
    assert not at.exception
    assert answer_button(at, "spiral").key == f"answer_{info.id}_1_spiral"


def test_same_galaxy_answered_twice_counts_once(env, lesson):
    """Two tabs of the same student (a double click racing a reload) both showing galaxy 1:
    the first answer counts, the second changes nothing and the reveal shows the first."""
    store, info = lesson["store"], lesson["info"]
    first = page(STUDENT, code=info.code)
    join(first, "Ada")
    again = page(STUDENT, code=info.code, token=first.session_state["classroom_token"])
    assert answer_button(again, "spiral").key == answer_button(first, "spiral").key
    answer_button(first, "spiral").click().run()
    answer_button(again, "elliptical").click().run()
    assert not again.exception
    (student,) = [s for s in store.students(info.id)]
    assert student["answered"] == 1
    rows = store.export_rows(info.id)
    assert [(r["nickname"], r["position"], r["answer"]) for r in rows] == [("Ada", 0, "spiral")]
    assert "You said **spiral**" in texts(again)


def test_reload_resumes_where_the_student_was(env, lesson):
    """A reload is a new session, and the address no longer says who the student is: the
    student joins again with the same nickname once the teacher lets them back in."""
    store, info = lesson["store"], lesson["info"]
    at = page(STUDENT, code=info.code)
    join(at, "Ada")
    for position in range(2):
        answer_button(at, "elliptical").click().run()
        at.button(key=f"next_{info.id}_{position}").click().run()
    params = dict(at.query_params)
    reloaded = page(STUDENT, **params)  # a new session: only the address survives a reload
    clean(reloaded)
    assert "you are **Ada**" not in texts(reloaded)
    store.let_back_in(info.id, "Ada")
    join(reloaded, "Ada")
    clean(reloaded)
    assert "you are **Ada**" in texts(reloaded)
    assert "2 of 6 galaxies done" in shown(reloaded)
    assert answer_button(reloaded, "spiral").key == f"answer_{info.id}_2_spiral"


def test_student_finishes_and_gets_a_summary(env, lesson):
    info = lesson["info"]
    at = page(STUDENT, code=info.code)
    join(at, "Ada")
    for position in range(info.target):
        answer_button(at, "cant_tell").click().run()
        at.button(key=f"next_{info.id}_{position}").click().run()
    clean(at)
    page_text = shown(at)
    assert f"You classified all {info.target} galaxies" in page_text
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["You vs the volunteers"] == "0%" and metrics["Can't tell"] == str(info.target)
    assert "The galaxies you saw differently from the volunteers" in page_text
    assert len(at.image) == info.target


@pytest.mark.parametrize("code,nickname,message", [
    ("ZZZZZZ", "Ada", "There is no class with the code ZZZZZZ. Check it with your teacher."),
    ("12", "Ada", "That is not a class code: codes have 6 letters and digits (no 0, O, 1 or I)."),
    (None, "", "Type a nickname first."),
    (None, "x" * 30, "Nicknames have at most 24 characters."),
])
def test_bad_join_is_one_sentence(env, lesson, code, nickname, message):
    at = page(STUDENT)
    join(at, nickname, code=code or lesson["info"].code)
    assert not at.exception
    assert [e.value for e in at.error] == [message]
    assert not lesson["store"].students(lesson["info"].id)


def test_wrong_code_in_the_link_is_one_sentence(env, lesson):
    at = page(STUDENT, code="QQQQQQ")
    assert not at.exception
    assert [e.value for e in at.error] == [
        "There is no class with the code QQQQQQ. Check it with your teacher."]
    assert [b for b in at.get("form_submit_button") if b.label == "Join the class"]


def test_taken_nickname_resumes_only_the_same_session(env, lesson):
    info = lesson["info"]
    ada = page(STUDENT, code=info.code)
    join(ada, "Ada")
    answer_button(ada, "spiral").click().run()
    other = page(STUDENT, code=info.code)
    join(other, "ADA")
    assert [e.value for e in other.error] == [
        "Someone in this class is already called Ada. Choose another nickname (if that is you "
        "after a reload, ask your teacher to let you back in)."]
    join(other, "Cy")
    clean(other)
    assert "you are **Cy**" in texts(other)
    ada.button(key="classroom_leave").click().run()  # "Not you?": a new identity for the tab
    join(ada, "Ada")
    assert [e.value for e in ada.error] == [
        "Someone in this class is already called Ada. Choose another nickname (if that is you "
        "after a reload, ask your teacher to let you back in)."]
    join(ada, "Bea")
    clean(ada)
    assert "you are **Bea**" in texts(ada)
    assert {s["nickname"] for s in lesson["store"].students(info.id)} == {"Ada", "Bea", "Cy"}


def test_same_tab_typing_its_own_nickname_again_resumes(env, lesson):
    info = lesson["info"]
    at = page(STUDENT, code=info.code)
    join(at, "Ada")
    answer_button(at, "spiral").click().run()
    token = at.session_state["classroom_token"]
    again = page(STUDENT, token=token)  # the same tab, no code in the address: the form again
    join(again, "ada", code=info.code.lower())
    clean(again)
    assert "Welcome back, Ada" in texts(again)
    assert "1 of 6 galaxies done" in shown(again)


def test_closed_class_takes_no_answers_and_no_new_students(env, lesson):
    store, info = lesson["store"], lesson["info"]
    at = page(STUDENT, code=info.code)
    join(at, "Ada")
    store.close_class(info.id)
    answer_button(at, "spiral").click().run()
    assert not at.exception
    assert [e.value for e in at.error] == ["This class is closed: it takes no more answers."]
    assert any("closed this class" in w.value for w in at.warning)
    late = page(STUDENT, code=info.code)
    join(late, "Bea")
    assert [e.value for e in late.error] == [
        "This class is closed: it takes no more answers. Ask your teacher."]
    assert not store.answers_of(store.join(info.code, "Ada", at.session_state["classroom_token"]))


def test_deleted_class_sends_the_student_back_to_the_join_form(env, lesson):
    store, info = lesson["store"], lesson["info"]
    at = page(STUDENT, code=info.code)
    join(at, "Ada")
    store.delete_class(info.id)
    at.run()
    assert not at.exception
    assert [e.value for e in at.error] == [
        "This class no longer exists. Ask your teacher for the new code."]


def test_student_without_prepared_data_is_told_to_ask_the_teacher(env, lesson, tmp_path,
                                                                  monkeypatch):
    info = lesson["info"]
    monkeypatch.setenv("GALAXY_PREPARED", str(tmp_path / "gone"))
    at = page(STUDENT, code=info.code)
    join(at, "Ada")
    assert not at.exception and not at.error
    assert any("Ask your teacher" in w.value for w in at.warning)


def test_nothing_a_student_types_reaches_a_file_outside_the_database(env, lesson, tmp_path):
    info = lesson["info"]
    before = {p for p in tmp_path.rglob("*") if p.is_file()}
    at = page(STUDENT, code=info.code)
    join(at, "../../etc/passwd")
    answer_button(at, "spiral").click().run()
    clean(at)
    after = {p for p in tmp_path.rglob("*") if p.is_file()}
    assert {p.name for p in after - before} <= {"classroom.sqlite3-wal", "classroom.sqlite3-shm"}


# --- learn ------------------------------------------------------------------------------------
def test_learn_page_explains_with_the_models_own_numbers(env):
    at = page(LEARN)
    clean(at)
    page_text = shown(at)
    for heading in ("1. Galaxies come in shapes", "2. How volunteers sorted almost",
                    "3. What a neural network does", "4. What does \"93% spiral\" mean?",
                    "5. The heat map (Grad-CAM)", "6. When the network is sure, and wrong"):
        assert heading in page_text
    assert re.search(r"grid of only \d+ × \d+ squares, each \d+ × \d+ pixels of the 32-pixel",
                     page_text), "the map's real resolution, from the model's input size"
    assert len(at.get("plotly_chart")) >= 1


def test_classroom_pages_have_no_stray_strings():
    for page_file in (TEACHER, STUDENT, LEARN):
        tree = ast.parse((REPO / page_file).read_text())
        stray = [node.lineno for node in tree.body[1:]
                 if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)]
        assert not stray, f"{page_file} lines {stray}: bare constants are drawn on the page"


# --- the real thing ---------------------------------------------------------------------------
@pytest.mark.realdata
def test_a_class_on_the_shipped_model_and_real_data(shared_data, tmp_path, monkeypatch,
                                                    navigation_only):  # noqa: F811
    from galaxy_core.config import Config
    from galaxy_core.data.prepare import PrepareRequest, prepare
    from galaxy_core.locations import SHIPPED_MODEL_DIR, prepared_dir

    assert (SHIPPED_MODEL_DIR / "model.json").is_file(), "the shipped model is part of the repo"
    monkeypatch.delenv("GALAXY_MODEL_DIR", raising=False)
    real_prepared = Path(REPO / "data" / "gz1")
    if (real_prepared / "summary.json").is_file():
        monkeypatch.delenv("GALAXY_PREPARED", raising=False)
    else:  # a clean clone (CI): what `make prepare` writes, without the cache, in tmp_path
        real_prepared = tmp_path / "gz1"
        prepare(PrepareRequest(images=shared_data / "gz1_sdss" / "images", out=real_prepared,
                               labels=shared_data / "gz1_sdss" / "gz1_classes.csv",
                               n_splits=3, build_cache=False), Config())
        monkeypatch.setenv("GALAXY_PREPARED", str(real_prepared))
    monkeypatch.setenv("GALAXY_DATA", str(shared_data))
    monkeypatch.setenv("GALAXY_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.setenv("GALAXY_CLASSROOM_DB", str(tmp_path / "classroom.sqlite3"))
    assert prepared_dir() == real_prepared
    at = create_class(name="Real sky", kind="hard", target=4)
    clean(at)
    store = ClassroomStore(tmp_path / "classroom.sqlite3")
    (info,) = store.list_classes()
    galaxies = store.galaxies(info.id)
    assert len(galaxies) == 4 and all(g.cam for g in galaxies)
    assert all(g.leaf in ("EL", "CW", "ACW", "EDGE") for g in galaxies)
    student = page(STUDENT, code=info.code)
    join(student, "Ada")
    answer_button(student, "spiral").click().run()
    clean(student)
    assert "**The network** said" in texts(student)


def test_classroom_pages_without_model_or_data_say_so(env, tmp_path, monkeypatch):
    monkeypatch.setenv("GALAXY_MODEL_DIR", str(tmp_path / "no_model"))
    monkeypatch.setattr("galaxy_core.locations.SHIPPED_MODEL_DIR", tmp_path / "no_model")
    monkeypatch.setenv("GALAXY_PREPARED", str(tmp_path / "not_prepared"))
    for path in (TEACHER, STUDENT, LEARN):
        at = page(path)
        assert not at.exception, (path, [e.value for e in at.exception])
        assert not at.error, (path, [e.value for e in at.error])
    learn = page(LEARN)
    assert "The examples need a model with a test report." in shown(learn)
    teacher = create_class()
    assert not teacher.exception
    assert "train one on the Train page" in shown(teacher)


def test_a_link_to_another_class_joins_that_class(env, lesson):
    store, info = lesson["store"], lesson["info"]
    at = page(STUDENT, code=info.code)
    join(at, "Ada")
    other = store.create_class("Year 10", "mixed", 3, "m", store.galaxies(info.id)[:3])
    at.query_params["code"] = other.code  # the student follows the next lesson's join link
    at.run()
    assert not at.exception
    assert [t for t in at.text_input if t.label == "Class code"][0].value == other.code
    join(at, "Ada")
    clean(at)
    assert "**Year 10**" in texts(at)


def test_join_qr_code_reads_back_as_the_join_link():
    """The QR code a teacher projects decodes (OpenCV's detector, as a phone camera would) to
    exactly the join link, code included."""
    import cv2
    import numpy as np

    from dashboard.classroom import join_qr

    link = "http://192.168.1.20:8501/classroom?code=K7PXM3"
    png = join_qr(link)
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    image = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_GRAYSCALE)
    text, _, _ = cv2.QRCodeDetector().detectAndDecode(image)
    assert text == link
    assert join_qr(link.replace("K7PXM3", "ABCD23")) != png

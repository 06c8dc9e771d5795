"""The classroom's storage and galaxy sets: joining, answering once, resuming, refusing, and 30
students answering at the same moment into one SQLite class."""

from __future__ import annotations

import sqlite3
import threading

import pandas as pd
import pytest

from galaxy_core.classroom.codes import ALPHABET, new_code, normalise_code
from galaxy_core.classroom.sets import SETS, choose
from galaxy_core.classroom.store import ClassroomError, ClassroomStore, Galaxy


def galaxies(n: int = 20) -> list[Galaxy]:
    return [Galaxy(position=i, objid=f"5877{i:05d}", image=f"{i}.jpeg",
                   label="spiral" if i % 2 else "elliptical", leaf="CW" if i % 2 else "EL",
                   model_label="spiral" if i % 3 else "elliptical", p_spiral=(i % 10) / 10)
            for i in range(n)]


@pytest.fixture
def store(tmp_path) -> ClassroomStore:
    return ClassroomStore(tmp_path / "classroom.sqlite3")


@pytest.fixture
def lesson(store):
    return store.create_class("Year 10 physics", "balanced", 20, "models/x", galaxies())


def test_codes_are_readable_aloud():
    for _ in range(200):
        code = new_code()
        assert len(code) == 6 and not set(code) & set("0O1I")
        assert set(code) <= set(ALPHABET)
    assert normalise_code(" b7kq-2m ") == "B7KQ2M"
    assert normalise_code("abc") is None and normalise_code("O0O0O0") is None


def test_join_answer_once_and_resume(store, lesson):
    ada = store.join(lesson.code.lower(), "  Ada  ", session="s1")
    assert ada.nickname == "Ada"
    assert store.answer(ada, 0, "spiral") is True
    assert store.answer(ada, 0, "elliptical") is False  # double click: counted once
    assert store.answers_of(ada) == {0: "spiral"}
    again = store.join(lesson.code, "ada", session="s1")  # reload: same student
    assert again == ada
    with pytest.raises(ClassroomError, match="already called"):
        store.join(lesson.code, "ADA", session="someone else")


def test_class_survives_a_restart(tmp_path, store, lesson):
    ada = store.join(lesson.code, "Ada", session="s1")
    store.answer(ada, 3, "cant_tell")
    reopened = ClassroomStore(tmp_path / "classroom.sqlite3")
    assert reopened.find_class(lesson.code).name == "Year 10 physics"
    assert reopened.answers_of(ada) == {3: "cant_tell"}
    assert [g.objid for g in reopened.galaxies(lesson.id)] == [g.objid for g in galaxies()]


@pytest.mark.parametrize("code,nickname,match", [
    ("ZZZZZZ", "Ada", "no class with the code"),
    ("12345", "Ada", "not a class code"),
    (None, "", "Type a nickname"),
    (None, "x" * 25, "at most 24"),
    (None, "bad\x07bell", "letters, digits"),
])
def test_bad_join_is_one_sentence(store, lesson, code, nickname, match):
    with pytest.raises(ClassroomError, match=match):
        store.join(code or lesson.code, nickname, session="s")


def test_closed_and_deleted_classes_take_no_answers(store, lesson):
    ada = store.join(lesson.code, "Ada", session="s1")
    store.close_class(lesson.id)
    with pytest.raises(ClassroomError, match="closed"):
        store.answer(ada, 1, "spiral")
    with pytest.raises(ClassroomError, match="closed"):
        store.join(lesson.code, "Bob", session="s2")
    assert store.join(lesson.code, "Ada", session="s1") == ada  # may still look back
    store.delete_class(lesson.id)
    with pytest.raises(ClassroomError, match="no class"):
        store.find_class(lesson.code)
    with pytest.raises(ClassroomError, match="no longer exists"):
        store.answer(ada, 2, "spiral")


def test_thirty_students_answering_at_once_lose_nothing(store, lesson):
    students = [store.join(lesson.code, f"student {i}", session=f"s{i}") for i in range(30)]
    start = threading.Barrier(30)
    errors: list[BaseException] = []

    def work(student) -> None:
        try:
            start.wait()
            for position in range(20):
                store.answer(student, position, ("spiral", "elliptical", "cant_tell")[position % 3])
                store.answer(student, position, "spiral")  # and a double click each time
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(s,)) for s in students]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[:3]
    rows = store.export_rows(lesson.id)
    assert len(rows) == 600
    assert len({(r["nickname"], r["position"]) for r in rows}) == 600
    assert all(r["answer"] == ("spiral", "elliptical", "cant_tell")[r["position"] % 3]
               for r in rows)
    assert {s["answered"] for s in store.students(lesson.id)} == {20}
    votes = store.votes(lesson.id)
    assert sum(v["spiral"] + v["elliptical"] + v["cant_tell"] for v in votes) == 600


def test_export_rows_carry_volunteers_and_network(store, lesson):
    ada = store.join(lesson.code, "Ada", session="s1")
    store.answer(ada, 1, "spiral")
    (row,) = store.export_rows(lesson.id)
    assert row["volunteers"] == "spiral" and row["gz1_leaf"] == "CW"
    assert row["galaxy_id"] == "587700001" and row["model"] == "spiral"
    assert set(row) >= {"nickname", "answer", "p_spiral", "time"}


def test_newer_schema_is_refused(tmp_path):
    path = tmp_path / "future.sqlite3"
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA user_version = 99")
    with pytest.raises(ClassroomError, match="newer version"):
        ClassroomStore(path)


def test_galaxy_sets_are_fixed_by_seed_and_shaped_as_named():
    rng = pd.Series(range(400))
    table = pd.DataFrame({"objid": rng.astype(str), "image": rng.astype(str) + ".jpeg",
                          "label": ["spiral" if i % 4 == 0 else "elliptical" for i in rng],
                          "leaf": "", "p_spiral": (rng % 100) / 100,
                          "model_label": ["spiral" if i % 100 >= 50 else "elliptical"
                                          for i in rng]})
    for kind in SETS:
        a, b = choose(table, kind, 20, seed=7), choose(table, kind, 20, seed=7)
        assert a["objid"].tolist() == b["objid"].tolist() and len(a) == 20
        assert a["objid"].is_unique
    balanced = choose(table, "balanced", 20, seed=1)
    assert (balanced["label"] == "spiral").sum() == 10
    hard = choose(table, "hard", 20, seed=1)
    doubt = (hard["p_spiral"] - 0.5).abs()
    wrong = hard["model_label"] != hard["label"]
    assert (wrong | (doubt <= 0.1)).all()

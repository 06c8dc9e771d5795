"""The classroom's storage and galaxy sets: joining, answering once, resuming, refusing, and 30
students answering at the same moment into one SQLite class."""

from __future__ import annotations

import sqlite3
import threading
from dataclasses import replace

import pandas as pd
import pytest

from galaxy_core.classroom.codes import ALPHABET, new_code, normalise_code
from galaxy_core.classroom.results import (EXPORT_COLUMNS, class_answer, class_score,
                                           export_csv, most_disputed, score, volunteers_words)
from galaxy_core.classroom.sets import SETS, choose, with_images
from galaxy_core.classroom.store import (ClassroomError, ClassroomStore, Galaxy,
                                         clean_class_name)
from galaxy_core.errors import GalaxyError


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


# --- teacher keys, resuming, stored maps ---------------------------------------------------------
def test_teacher_key_opens_the_class_and_the_join_code_does_not(store, lesson):
    assert len(lesson.teacher_key) >= 20 and lesson.teacher_key != lesson.code
    assert store.class_for_teacher(lesson.teacher_key) == lesson
    for wrong in ("", lesson.code, "x" * 500, lesson.teacher_key[:-1]):
        with pytest.raises(ClassroomError, match="does not open any class"):
            store.class_for_teacher(wrong)
    other = store.create_class("Another", "hard", 5, "models/x", galaxies(5))
    assert other.teacher_key != lesson.teacher_key
    store.delete_class(lesson.id)
    assert store.class_by_id(lesson.id) is None
    with pytest.raises(ClassroomError, match="does not open any class"):
        store.class_for_teacher(lesson.teacher_key)


def test_schema_1_file_is_upgraded_with_teacher_keys(tmp_path):
    """A classroom file written before teacher links (schema 1) keeps its classes and answers
    and gets a teacher key per class."""
    path = tmp_path / "old.sqlite3"
    with sqlite3.connect(path) as db:
        db.executescript("""
            CREATE TABLE classes (id INTEGER PRIMARY KEY, code TEXT NOT NULL UNIQUE,
                name TEXT NOT NULL, galaxy_set TEXT NOT NULL, target INTEGER NOT NULL,
                model TEXT NOT NULL, created REAL NOT NULL, closed REAL);
            INSERT INTO classes VALUES (1, 'B7KQ2M', 'Old class', 'mixed', 20, 'm', 1.0, NULL);
            PRAGMA user_version = 1;""")
    store = ClassroomStore(path)
    old = store.find_class("B7KQ2M")
    assert old.name == "Old class" and len(old.teacher_key) >= 20
    assert store.class_for_teacher(old.teacher_key).id == 1
    assert ClassroomStore(path).find_class("B7KQ2M").teacher_key == old.teacher_key
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == 2


def test_a_reload_finds_the_student_of_this_session_only(store, lesson):
    ada = store.join(lesson.code, "Ada", session="tab-1")
    store.join(lesson.code, "Bob", session="tab-2")
    assert store.student_for_session(lesson.id, "tab-1") == ada
    assert store.student_for_session(lesson.id, "tab-3") is None
    assert store.student_for_session(lesson.id, "") is None
    other = store.create_class("Other", "mixed", 3, "m", galaxies(3))
    assert store.student_for_session(other.id, "tab-1") is None


def test_maps_are_kept_and_can_be_left_out(store):
    with_maps = [replace(g, cam=b"\x89PNG" + bytes([i])) for i, g in enumerate(galaxies(4))]
    info = store.create_class("Maps", "balanced", 4, "m", with_maps)
    assert [g.cam for g in store.galaxies(info.id)] == [g.cam for g in with_maps]
    assert all(g.cam is None for g in store.galaxies(info.id, cams=False))
    assert [g.objid for g in store.galaxies(info.id, cams=False)] == [g.objid for g in with_maps]
    assert store.cam(info.id, 2) == with_maps[2].cam
    assert store.cam(info.id, 99) is None


@pytest.mark.parametrize("name", ["", "   ", "x" * 81])
def test_class_names_are_refused_in_one_sentence(store, name):
    with pytest.raises(ClassroomError, match="name of 1-80 characters"):
        clean_class_name(name)
    with pytest.raises(ClassroomError, match="name of 1-80 characters"):
        store.create_class(name, "balanced", 5, "m", galaxies(5))


# --- results --------------------------------------------------------------------------------
def test_student_score_compares_with_the_network_on_the_same_galaxies():
    gals = galaxies(6)  # volunteers: e s e s e s; network: e s s e s s
    mine = score(gals, {0: "elliptical", 1: "elliptical", 2: "cant_tell", 5: "spiral", 42: "x"})
    assert (mine.answered, mine.agree, mine.cant_tell) == (4, 2, 1)
    assert mine.model_agree == 3  # positions 0, 1 and 5 of the same four
    assert mine.missed == [1, 2]
    assert mine.accuracy == 0.5 and mine.model_accuracy == 0.75
    assert score(gals, {}).accuracy is None


def test_class_results_and_most_disputed(store, lesson):
    people = [store.join(lesson.code, n, session=n) for n in ("a", "b", "c", "d")]
    for person, answer in zip(people, ("spiral", "spiral", "elliptical", "cant_tell")):
        store.answer(person, 1, answer)  # split: 2 / 1 / 1
    for person in people[:3]:
        store.answer(person, 2, "elliptical")  # all agree
    store.answer(people[0], 3, "spiral")
    store.answer(people[1], 3, "elliptical")  # split 1 / 1
    whole = class_score(store.export_rows(lesson.id))
    assert whole.answered == 9 and whole.cant_tell == 1
    assert whole.agree == 2 + 3 + 1  # g1 spiral, g2 elliptical, g3 spiral (labels e s e s..)
    votes = {v["position"]: v for v in store.votes(lesson.id)}
    assert class_answer(votes[1]) == "spiral" and class_answer(votes[3]) == "split"
    assert class_answer(votes[0]) == ""
    disputed = most_disputed(store.votes(lesson.id))
    assert [d["position"] for d in disputed] == [1, 3]
    assert disputed[0]["split"] == pytest.approx(0.5)


def test_export_csv_has_every_column_and_defuses_formulas(store, lesson):
    mallory = store.join(lesson.code, "=HYPERLINK(1)", session="m")
    store.answer(mallory, 0, "spiral")
    text = export_csv(store.export_rows(lesson.id))
    header, row = text.strip().split("\n")
    assert header.split(",") == list(EXPORT_COLUMNS)
    assert row.startswith("'=HYPERLINK(1),5877")
    assert ",spiral,elliptical,EL,elliptical,0.0," in row


def test_volunteers_words_name_the_gz1_leaf():
    gal = galaxies(2)[1]
    assert volunteers_words(gal) == "clockwise spiral"
    assert volunteers_words(replace(gal, leaf="ACW")) == "anticlockwise spiral"
    edge_on = volunteers_words(replace(gal, leaf="EDGE"))
    assert edge_on == "edge-on disk (a spiral seen from the side)"
    assert volunteers_words(replace(gal, leaf="")) == "spiral"
    assert volunteers_words(galaxies(1)[0]) == "elliptical"


# --- sets from real files ---------------------------------------------------------------------
def test_with_images_keeps_only_pictures_inside_the_image_folder(tmp_path):
    from galaxy_core.data.prepared import PreparedData

    images = tmp_path / "images"
    images.mkdir()
    (images / "a.png").write_bytes(b"x")
    (tmp_path / "secret.png").write_bytes(b"x")
    data = PreparedData(root=tmp_path, summary={"image_dir": str(images)}, table=pd.DataFrame())
    table = pd.DataFrame({"image": ["a.png", "missing.png", "../secret.png", "/etc/passwd"]})
    assert with_images(data, table)["image"].tolist() == ["a.png"]


def test_with_cams_draws_one_png_per_galaxy_for_the_networks_answer(tmp_path):
    import io

    import numpy as np
    import torch
    from PIL import Image

    from galaxy_core.classroom.maps import CAM_SIZE, with_cams
    from galaxy_core.config import Config
    from galaxy_core.data.prepared import PreparedData
    from galaxy_core.model.build import build_model
    from galaxy_core.model.store import load_model, save_model
    from tests.conftest import draw_galaxy

    torch.manual_seed(0)
    save_model(tmp_path / "m", build_model("resnet18"), Config(arch="resnet18", image_size=32),
               {"temperature": 1.0})
    loaded = load_model(tmp_path / "m")
    images = tmp_path / "images"
    images.mkdir()
    for i, kind in enumerate(("spiral", "elliptical")):
        draw_galaxy(kind, 64, seed=i).save(images / f"{i}.png")
    data = PreparedData(root=tmp_path, summary={"image_dir": str(images)}, table=pd.DataFrame())
    todo = [replace(g, image=f"{g.position}.png") for g in galaxies(2)]
    seen: list[tuple[int, int]] = []
    lock = threading.Lock()
    done = with_cams(loaded, data, todo, progress=lambda i, n: seen.append((i, n)), lock=lock)
    assert seen == [(1, 2), (2, 2)] and not lock.locked()
    for galaxy in done:
        picture = Image.open(io.BytesIO(galaxy.cam))
        assert picture.format == "PNG" and picture.size == (CAM_SIZE, CAM_SIZE)
        assert np.asarray(picture).std() > 0
    with pytest.raises(GalaxyError):
        with_cams(loaded, data, [replace(todo[0], image="../outside.png")])

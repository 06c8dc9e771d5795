"""A class's galaxies, students and answers in one SQLite file.

SQLite because a class of 30 answering at the same moment is 30 small writes a second, which one
file in WAL mode takes without a server; a class survives a restart of the app, and nothing a
student types reaches any other file. Every call opens its own connection (the dashboard serves
each browser session from its own thread), and every write is one transaction. An answer is
keyed by (student, galaxy), so a double click or a reload records it once.

The schema carries a version (``PRAGMA user_version``): a file written by a newer version is
refused rather than misread, and an older one is brought up to date in place (version 1 had no
teacher keys: each of its classes gets one).

The file carries our mark (``PRAGMA application_id``). Before anything is written, the file is
checked: only a missing or empty file, one with our mark, or an unmarked one holding nothing but
our own tables (written before the mark) is opened; any other file (another program's SQLite
database, a text file) is refused in one sentence and left byte-identical.

Who may see a class: the **join code** (six characters, read aloud) lets students in; the
**teacher key** (long and random, in the teacher's link) opens the class's results, export,
closing and deletion. Knowing the join code gives no way to the teacher key.

How much it holds is bounded (``galaxy_core.classroom.limits``): open and stored classes,
galaxies per class, students per class. A nickname that looks like one already in the class
(``names.skeleton``: "Аda" with a Cyrillic А beside "Ada") is refused.
"""

from __future__ import annotations

import secrets
import sqlite3
import time
import unicodedata
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from galaxy_core.classroom.codes import new_code, normalise_code
from galaxy_core.classroom.limits import (MAX_OPEN_CLASSES, MAX_STORED_CLASSES, MAX_STUDENTS,
                                          MAX_TARGET)
from galaxy_core.classroom.names import skeleton
from galaxy_core.errors import GalaxyError

SCHEMA_VERSION = 2
APPLICATION_ID = 0x47414C58
"""``PRAGMA application_id`` of a classroom file: "GALX"."""
_OUR_TABLES = frozenset({"classes", "galaxies", "students", "answers"})
_SQLITE_MAGIC = b"SQLite format 3\x00"
ANSWERS = ("spiral", "elliptical", "cant_tell")
MAX_NICKNAME = 24
MAX_CLASS_NAME = 80

_SCHEMA = """
CREATE TABLE IF NOT EXISTS classes (
    id INTEGER PRIMARY KEY,
    code TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    galaxy_set TEXT NOT NULL,
    target INTEGER NOT NULL,
    model TEXT NOT NULL,
    created REAL NOT NULL,
    closed REAL,
    teacher_key TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS galaxies (
    class_id INTEGER NOT NULL REFERENCES classes(id) ON DELETE CASCADE,
    position INTEGER NOT NULL,
    objid TEXT NOT NULL,
    image TEXT NOT NULL,
    label TEXT NOT NULL,
    leaf TEXT NOT NULL,
    model_label TEXT NOT NULL,
    p_spiral REAL NOT NULL,
    cam BLOB,
    PRIMARY KEY (class_id, position)
);
CREATE TABLE IF NOT EXISTS students (
    id INTEGER PRIMARY KEY,
    class_id INTEGER NOT NULL REFERENCES classes(id) ON DELETE CASCADE,
    nickname TEXT NOT NULL,
    nickname_key TEXT NOT NULL,
    session TEXT NOT NULL,
    joined REAL NOT NULL,
    UNIQUE (class_id, nickname_key)
);
CREATE TABLE IF NOT EXISTS answers (
    student_id INTEGER NOT NULL REFERENCES students(id) ON DELETE CASCADE,
    class_id INTEGER NOT NULL REFERENCES classes(id) ON DELETE CASCADE,
    position INTEGER NOT NULL,
    answer TEXT NOT NULL CHECK (answer IN ('spiral', 'elliptical', 'cant_tell')),
    answered REAL NOT NULL,
    PRIMARY KEY (student_id, position)
);
CREATE INDEX IF NOT EXISTS answers_by_class ON answers (class_id, position);
CREATE INDEX IF NOT EXISTS students_by_session ON students (class_id, session);
"""


def new_teacher_key() -> str:
    """The secret of a teacher's link: 128 random bits, URL-safe."""
    return secrets.token_urlsafe(16)


class ClassroomError(GalaxyError):
    """A wrong or closed code, a bad or taken nickname, a class that is gone: one sentence for
    the person at the screen."""


@dataclass(frozen=True)
class Galaxy:
    """One galaxy of a class's fixed set, with what the volunteers and the network said."""

    position: int
    objid: str
    image: str
    label: str
    """The volunteers' answer (spiral or elliptical)."""
    leaf: str
    """The Galaxy Zoo 1 leaf: EL, CW, ACW or EDGE (empty when the labels had none)."""
    model_label: str
    p_spiral: float
    """The network's calibrated probability of spiral."""
    cam: bytes | None = None
    """PNG of the Grad-CAM overlay, computed once when the class was made."""


@dataclass(frozen=True)
class ClassInfo:
    id: int
    code: str
    name: str
    galaxy_set: str
    target: int
    model: str
    created: float
    closed: float | None
    teacher_key: str = ""
    """The secret in the teacher's link: who holds it sees and runs the class."""

    @property
    def is_open(self) -> bool:
        return self.closed is None


@dataclass(frozen=True)
class Student:
    id: int
    class_id: int
    nickname: str


def clean_nickname(text: str) -> str:
    """A nickname as shown: spaces squeezed, 1-24 printable characters."""
    name = " ".join(unicodedata.normalize("NFC", str(text)).split())
    if not name:
        raise ClassroomError("Type a nickname first.")
    if len(name) > MAX_NICKNAME:
        raise ClassroomError(f"Nicknames have at most {MAX_NICKNAME} characters.")
    if not all(ch.isprintable() for ch in name):
        raise ClassroomError("Nicknames use letters, digits and spaces.")
    return name


def clean_class_name(text: str) -> str:
    """A class name as shown: spaces squeezed, 1-80 characters."""
    name = " ".join(str(text).split())
    if not name or len(name) > MAX_CLASS_NAME:
        raise ClassroomError(f"Give the class a name of 1-{MAX_CLASS_NAME} characters.")
    return name


def _check_ours(path: Path) -> None:
    """Refuse, before touching it, a file that is not a classroom file: only a missing or empty
    file, one marked with :data:`APPLICATION_ID`, or an unmarked SQLite file whose tables are
    all ours (written before the mark) may be opened for writing."""
    foreign = (f"{path} is not a classroom file (another program's data?); it was left "
               "untouched: set GALAXY_CLASSROOM_DB to a new file name.")
    try:
        with open(path, "rb") as file:
            header = file.read(100)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise ClassroomError(f"The classroom file {path} cannot be read ({exc.strerror}).") from exc
    if not header:
        return
    if len(header) < 100 or not header.startswith(_SQLITE_MAGIC):
        raise ClassroomError(foreign)
    application_id = int.from_bytes(header[68:72], "big")
    if application_id == APPLICATION_ID:
        return
    if application_id != 0:
        raise ClassroomError(foreign)
    try:  # unmarked: an older classroom file, or someone else's
        db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=30)
        try:
            names = {r[0] for r in db.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table'")}
            columns = ({r[1] for r in db.execute("PRAGMA table_info(classes)")}
                       if "classes" in names else set())
        finally:
            db.close()
    except sqlite3.Error as exc:
        raise ClassroomError(foreign) from exc
    if not names <= _OUR_TABLES or (names and not {"code", "name", "galaxy_set"} <= columns):
        raise ClassroomError(foreign)


class ClassroomStore:
    """All classes of one dashboard, in the SQLite file ``path`` (made on first use)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        _check_ours(self.path)
        with self._connect() as db:
            version = db.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise ClassroomError(f"{self.path} was written by a newer version (schema "
                                     f"{version}); this one reads schema {SCHEMA_VERSION}")
            db.executescript(_SCHEMA)
        with self._write() as db:  # one process upgrades; another waits, then finds it done
            self._upgrade(db)
            db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            db.execute(f"PRAGMA application_id = {APPLICATION_ID}")

    @staticmethod
    def _upgrade(db: sqlite3.Connection) -> None:
        """Bring a file of an older schema up to this one (idempotent)."""
        columns = {r[1] for r in db.execute("PRAGMA table_info(classes)")}
        if "teacher_key" not in columns:  # schema 1
            db.execute("ALTER TABLE classes ADD COLUMN teacher_key TEXT NOT NULL DEFAULT ''")
        for (class_id,) in db.execute("SELECT id FROM classes WHERE teacher_key = ''").fetchall():
            db.execute("UPDATE classes SET teacher_key = ? WHERE id = ?",
                       (new_teacher_key(), class_id))

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        try:
            db.execute("PRAGMA journal_mode = WAL")
            db.execute("PRAGMA foreign_keys = ON")
            db.execute("PRAGMA busy_timeout = 30000")
            db.row_factory = sqlite3.Row
            yield db
        finally:
            db.close()

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One transaction, taking the write lock at its start (no lock upgrade deadlocks)."""
        with self._connect() as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    # --- teacher ------------------------------------------------------------------------------
    def create_class(self, name: str, galaxy_set: str, target: int, model: str,
                     galaxies: Sequence[Galaxy]) -> ClassInfo:
        name = clean_class_name(name)
        if not galaxies:
            raise ClassroomError("A class needs at least one galaxy.")
        if len(galaxies) > MAX_TARGET:
            raise ClassroomError(f"A class has at most {MAX_TARGET} galaxies.")
        target = max(1, min(int(target), len(galaxies), MAX_TARGET))
        with self._write() as db:
            self._check_room(db)
            for _ in range(50):
                code = new_code()
                if not db.execute("SELECT 1 FROM classes WHERE code = ?", (code,)).fetchone():
                    break
            cursor = db.execute(
                "INSERT INTO classes (code, name, galaxy_set, target, model, created, "
                "teacher_key) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (code, name, galaxy_set, target, model, time.time(), new_teacher_key()))
            class_id = cursor.lastrowid
            db.executemany(
                "INSERT INTO galaxies VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [(class_id, i, g.objid, g.image, g.label, g.leaf, g.model_label,
                  float(g.p_spiral), g.cam) for i, g in enumerate(galaxies)])
        return self.find_class(code)

    @staticmethod
    def _check_room(db: sqlite3.Connection) -> None:
        """Refuse a new class past the limits (inside the writing transaction, so two teachers
        at once cannot both take the last place)."""
        stored, open_now = db.execute(
            "SELECT COUNT(*), COUNT(*) - COUNT(closed) FROM classes").fetchone()
        if open_now >= MAX_OPEN_CLASSES:
            raise ClassroomError(f"This server already has {MAX_OPEN_CLASSES} open classes: "
                                 "close one on the Teacher page first.")
        if stored >= MAX_STORED_CLASSES:
            raise ClassroomError(f"This server already keeps {MAX_STORED_CLASSES} classes: "
                                 "delete old ones on the Teacher page first.")

    def check_room(self) -> None:
        """Say, before a class is drawn (a minute of CPU), whether one more would be refused."""
        with self._connect() as db:
            self._check_room(db)

    def list_classes(self) -> list[ClassInfo]:
        with self._connect() as db:
            rows = db.execute("SELECT * FROM classes ORDER BY created DESC").fetchall()
        return [ClassInfo(**dict(r)) for r in rows]

    def class_for_teacher(self, teacher_key: str) -> ClassInfo:
        """The class whose teacher link carries ``teacher_key``; one sentence when none does."""
        key = str(teacher_key or "")
        row = None
        if key and len(key) <= 64:
            with self._connect() as db:
                row = db.execute("SELECT * FROM classes WHERE teacher_key = ?",
                                 (key,)).fetchone()
        if row is None:
            raise ClassroomError("That teacher link does not open any class on this server; "
                                 "the class may have been deleted.")
        return ClassInfo(**dict(row))

    def class_by_id(self, class_id: int) -> ClassInfo | None:
        """The class as it is now (None once deleted)."""
        with self._connect() as db:
            row = db.execute("SELECT * FROM classes WHERE id = ?", (class_id,)).fetchone()
        return None if row is None else ClassInfo(**dict(row))

    def close_class(self, class_id: int) -> None:
        with self._write() as db:
            db.execute("UPDATE classes SET closed = ? WHERE id = ? AND closed IS NULL",
                       (time.time(), class_id))

    def delete_class(self, class_id: int) -> None:
        with self._write() as db:
            db.execute("DELETE FROM classes WHERE id = ?", (class_id,))

    # --- students -----------------------------------------------------------------------------
    def find_class(self, code: str) -> ClassInfo:
        """The class with this code; a wrong code is one sentence."""
        normal = normalise_code(code)
        if normal is None:
            raise ClassroomError("That is not a class code: codes have 6 letters and digits "
                                 "(no 0, O, 1 or I).")
        with self._connect() as db:
            row = db.execute("SELECT * FROM classes WHERE code = ?", (normal,)).fetchone()
        if row is None:
            raise ClassroomError(f"There is no class with the code {normal}. Check it with "
                                 "your teacher.")
        return ClassInfo(**dict(row))

    def join(self, code: str, nickname: str, session: str) -> Student:
        """Join a class, or come back to it: a nickname already taken (or one that looks the
        same, :func:`names.skeleton`) is the same student only from the same browser session,
        or once after the teacher let that student back in (:meth:`let_back_in`); anyone else
        must choose another."""
        info = self.find_class(code)
        name = clean_nickname(nickname)
        key = skeleton(name)
        if not session:
            raise ClassroomError("This page lost who you are: reload it and join again.")
        with self._write() as db:
            rows = db.execute("SELECT id, nickname, session FROM students WHERE class_id = ?",
                              (info.id,)).fetchall()
            # older rows hold a case-folded key: compare every nickname's skeleton here
            row = next((r for r in rows if skeleton(r["nickname"]) == key), None)
            if row is not None:
                if row["session"] == "":  # the teacher let this student back in
                    db.execute("UPDATE students SET session = ? WHERE id = ?",
                               (session, row["id"]))
                elif row["session"] != session:
                    raise ClassroomError(
                        f"Someone in this class is already called {row['nickname']}. Choose "
                        "another nickname (if that is you after a reload, ask your teacher to "
                        "let you back in).")
                return Student(row["id"], info.id, row["nickname"])
            if not info.is_open:
                raise ClassroomError("This class is closed: it takes no more answers. Ask "
                                     "your teacher.")
            if len(rows) >= MAX_STUDENTS:
                raise ClassroomError(f"This class is full ({MAX_STUDENTS} students). Ask your "
                                     "teacher.")
            try:
                cursor = db.execute("INSERT INTO students (class_id, nickname, nickname_key, "
                                    "session, joined) VALUES (?, ?, ?, ?, ?)",
                                    (info.id, name, key, session, time.time()))
            except sqlite3.IntegrityError as exc:  # an older row holding this very key
                raise ClassroomError(f"Someone in this class is already called {name}. "
                                     "Choose another nickname.") from exc
            return Student(cursor.lastrowid, info.id, name)

    def let_back_in(self, class_id: int, nickname: str) -> bool:
        """The teacher's answer to "I reloaded my page": the student ``nickname`` is no longer
        tied to the browser session it joined from, and the next browser that joins with that
        nickname becomes that student, answers kept. True when there was such a student."""
        with self._write() as db:
            cursor = db.execute("UPDATE students SET session = '' WHERE class_id = ? AND "
                                "nickname = ?", (class_id, str(nickname)))
            return cursor.rowcount > 0

    def student_for_session(self, class_id: int, session: str) -> Student | None:
        """The student this browser session joined ``class_id`` as (a reload resumes), if any."""
        if not session:
            return None
        with self._connect() as db:
            row = db.execute("SELECT id, nickname FROM students WHERE class_id = ? AND "
                             "session = ? ORDER BY joined LIMIT 1",
                             (class_id, str(session))).fetchone()
        return None if row is None else Student(row["id"], class_id, row["nickname"])

    def galaxies(self, class_id: int, cams: bool = True) -> list[Galaxy]:
        """The class's galaxies in the order students see them; ``cams=False`` leaves the
        Grad-CAM pictures out (fetch one with :meth:`cam`)."""
        columns = "*" if cams else ("position, objid, image, label, leaf, model_label, "
                                    "p_spiral, NULL AS cam")
        with self._connect() as db:
            rows = db.execute(f"SELECT {columns} FROM galaxies WHERE class_id = ? "
                              "ORDER BY position", (class_id,)).fetchall()
        return [Galaxy(**{k: r[k] for k in r.keys() if k != "class_id"}) for r in rows]

    def cam(self, class_id: int, position: int) -> bytes | None:
        """The stored Grad-CAM picture (PNG) of one galaxy of a class."""
        with self._connect() as db:
            row = db.execute("SELECT cam FROM galaxies WHERE class_id = ? AND position = ?",
                             (class_id, int(position))).fetchone()
        return None if row is None else row["cam"]

    def answer(self, student: Student, position: int, answer: str) -> bool:
        """Record an answer; True when it is new. A second answer to the same galaxy (double
        click, reload) changes nothing."""
        if answer not in ANSWERS:
            raise ClassroomError(f"An answer is one of {', '.join(ANSWERS)}.")
        with self._write() as db:
            closed = db.execute("SELECT closed FROM classes WHERE id = ?",
                                (student.class_id,)).fetchone()
            if closed is None:
                raise ClassroomError("This class no longer exists. Ask your teacher.")
            if closed[0] is not None:
                raise ClassroomError("This class is closed: it takes no more answers.")
            cursor = db.execute("INSERT OR IGNORE INTO answers VALUES (?, ?, ?, ?, ?)",
                                (student.id, student.class_id, int(position), answer,
                                 time.time()))
            return cursor.rowcount == 1

    def answers_of(self, student: Student) -> dict[int, str]:
        with self._connect() as db:
            rows = db.execute("SELECT position, answer FROM answers WHERE student_id = ?",
                              (student.id,)).fetchall()
        return {r["position"]: r["answer"] for r in rows}

    # --- results ------------------------------------------------------------------------------
    def export_rows(self, class_id: int) -> list[dict[str, Any]]:
        """Every answer beside the volunteers' and the network's, for the teacher's CSV."""
        with self._connect() as db:
            rows = db.execute(
                "SELECT s.nickname, g.objid, g.position, a.answer, g.label, g.leaf, "
                "g.model_label, g.p_spiral, a.answered FROM answers a "
                "JOIN students s ON s.id = a.student_id "
                "JOIN galaxies g ON g.class_id = a.class_id AND g.position = a.position "
                "WHERE a.class_id = ? ORDER BY a.answered, s.nickname", (class_id,)).fetchall()
        return [{"nickname": r["nickname"], "galaxy_id": r["objid"], "position": r["position"],
                 "answer": r["answer"], "volunteers": r["label"], "gz1_leaf": r["leaf"],
                 "model": r["model_label"], "p_spiral": round(r["p_spiral"], 4),
                 "time": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(r["answered"]))}
                for r in rows]

    def students(self, class_id: int) -> list[dict[str, Any]]:
        """Each student's progress and score against the volunteers."""
        with self._connect() as db:
            rows = db.execute(
                "SELECT s.nickname, COUNT(a.position) AS answered, "
                "SUM(a.answer = g.label) AS agree FROM students s "
                "LEFT JOIN answers a ON a.student_id = s.id "
                "LEFT JOIN galaxies g ON g.class_id = a.class_id AND g.position = a.position "
                "WHERE s.class_id = ? GROUP BY s.id ORDER BY s.joined", (class_id,)).fetchall()
        return [{"nickname": r["nickname"], "answered": r["answered"],
                 "agree": int(r["agree"] or 0)} for r in rows]

    def votes(self, class_id: int) -> list[dict[str, Any]]:
        """Per galaxy: the class's votes, the volunteers' label and the network's answer."""
        with self._connect() as db:
            rows = db.execute(
                "SELECT g.position, g.objid, g.label, g.model_label, g.p_spiral, "
                "SUM(a.answer = 'spiral') AS spiral, SUM(a.answer = 'elliptical') AS elliptical, "
                "SUM(a.answer = 'cant_tell') AS cant_tell FROM galaxies g "
                "LEFT JOIN answers a ON a.class_id = g.class_id AND a.position = g.position "
                "WHERE g.class_id = ? GROUP BY g.position ORDER BY g.position",
                (class_id,)).fetchall()
        return [{**dict(r), "spiral": int(r["spiral"] or 0),
                 "elliptical": int(r["elliptical"] or 0), "cant_tell": int(r["cant_tell"] or 0)}
                for r in rows]

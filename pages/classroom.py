"""Classroom (students): join a class with its code and a nickname, classify its galaxies one at a
time, and after each answer see what the Galaxy Zoo volunteers and the network said, with the
network's Grad-CAM. Nothing here runs the network: its answers and maps were stored when the
teacher made the class."""

import secrets

import streamlit as st

from dashboard import classroom as cls
from dashboard.ui import require_app
from galaxy_core.classroom.codes import normalise_code
from galaxy_core.classroom.results import ANSWER_WORDS, Score, score
from galaxy_core.classroom.store import (MAX_NICKNAME, ClassInfo, ClassroomError, Galaxy,
                                         Student)
from galaxy_core.errors import GalaxyError

# Session keys (comments, not bare strings: Streamlit's magic would draw those).
STUDENT_KEY = "classroom_student"  # the Student this tab answers as
REVEAL_KEY = "classroom_reveal"  # (class id, position) whose answer is being revealed
NOTICE_KEY = "classroom_notice"  # a welcome line to show once after a rerun
ERROR_KEY = "classroom_error"  # a refused answer, shown once after the rerun
CHEERED_KEY = "classroom_cheered"  # the end's balloons were shown

require_app()
st.title("Classroom")
store = cls.store()
token = cls.session_token()
code_param = str(st.query_params.get(cls.CODE_PARAM, ""))[:40]
st.query_params.pop(cls.STUDENT_PARAM, None)  # an old link's student token is never used


def leave() -> None:
    """Someone else takes this screen: a new identity for the tab, the code kept."""
    for key in (STUDENT_KEY, REVEAL_KEY):
        st.session_state.pop(key, None)
    st.session_state[cls.TOKEN_KEY] = secrets.token_urlsafe(16)


def settle(student: Student, info: ClassInfo) -> None:
    """This tab answers as ``student``; the address keeps only the class code (shareable), never
    who the student is."""
    st.session_state[STUDENT_KEY] = student
    st.query_params[cls.CODE_PARAM] = info.code


def join_form(problem: str = "") -> None:
    st.markdown("Type the **code** your teacher gave you and a **nickname** for today. No real "
                "name and no account: only your teacher sees your nickname, and it is kept only "
                "in this dashboard's class list.")
    if problem:
        st.error(problem)
    with st.form("join"):
        code = st.text_input("Class code", value=code_param, max_chars=40,
                             placeholder="for example B7KQ2M")
        nickname = st.text_input("Nickname", max_chars=60, placeholder="for example Comet Kid",
                                 help=f"1 to {MAX_NICKNAME} letters, digits or spaces.")
        joined = st.form_submit_button("Join the class", type="primary")
    if joined:
        try:
            student = store.join(code, nickname, token)
            info = store.find_class(code)
        except ClassroomError as exc:
            st.error(cls.one_sentence(exc))
            return
        done = len(store.answers_of(student))
        if done:
            st.session_state[NOTICE_KEY] = (f"Welcome back, {cls.plain(student.nickname)}: you "
                                            f"carry on after the {cls.galaxies_word(done)} "
                                            "you already did.")
        settle(student, info)
        st.rerun()
    st.page_link(cls.LEARN_PAGE, label="Waiting? Read how galaxies are sorted on the Learn page",
                 icon=":material/school:")


# --- who is this? -----------------------------------------------------------------------------
student: Student | None = st.session_state.get(STUDENT_KEY)
info: ClassInfo | None = store.class_by_id(student.class_id) if student is not None else None
problem = ""
if student is not None and info is None:
    st.session_state.pop(STUDENT_KEY, None)
    student, problem = None, "This class no longer exists. Ask your teacher for the new code."
elif info is not None and code_param and normalise_code(code_param) not in (None, info.code):
    st.session_state.pop(STUDENT_KEY, None)  # a link to another class: join that one
    student = info = None
if student is None and code_param and not problem:
    try:
        found = store.find_class(code_param)
    except ClassroomError as exc:
        problem = cls.one_sentence(exc)
    else:
        student = store.student_for_session(found.id, token)  # a reload of this tab resumes
        if student is not None:
            info = found
            settle(student, found)
if student is None or info is None:
    join_form(problem)
    st.stop()

notice = st.session_state.pop(NOTICE_KEY, None)
if notice:
    st.info(notice, icon=":material/waving_hand:")
refused = st.session_state.pop(ERROR_KEY, None)
if refused:
    st.error(refused)

# --- the class --------------------------------------------------------------------------------
data = cls.prepared()
if data is None:
    st.warning("The galaxy pictures for this class are not on this server yet. Ask your "
               "teacher: the Teacher page says how to get them.")
    st.stop()

galaxies = store.galaxies(info.id, cams=False)[:info.target]
answers = store.answers_of(student)
mine = score(galaxies, answers)
todo = [g for g in galaxies if g.position not in answers]
target = len(galaxies)

top, switch = st.columns([5, 1], vertical_alignment="bottom")
top.markdown(f"**{cls.plain(info.name)}** · you are **{cls.plain(student.nickname)}**")
switch.button("Not you?", on_click=leave, help="Someone else takes this screen: they join "
              "with their own nickname.", key="classroom_leave")
st.progress(len(answers) / target if target else 0.0,
            text=f"{len(answers)} of {cls.galaxies_word(target)} done")


def score_line(s: Score) -> str:
    if not s.answered:
        return "Your score appears after your first answer."
    return (f"You agree with the volunteers on **{s.agree} of {s.answered}** galaxies; the "
            f"network agrees with them on **{s.model_agree}** of the same {s.answered}.")


st.caption(score_line(mine))


def record(position: int, answer: str) -> None:
    """The answer to the galaxy shown at ``position`` (the button carries it, so a double
    click or a click on a stale page still names the right galaxy); counted once."""
    current: Student = st.session_state[STUDENT_KEY]
    try:
        store.answer(current, position, answer)
    except ClassroomError as exc:
        st.session_state[ERROR_KEY] = cls.one_sentence(exc)
        return
    st.session_state[REVEAL_KEY] = (current.class_id, position)


def next_galaxy() -> None:
    st.session_state.pop(REVEAL_KEY, None)


def picture(galaxy: Galaxy, width: int | str = 423, caption: str | None = None) -> None:
    try:
        st.image(cls.galaxy_picture(data, galaxy), width=width, caption=caption)
    except GalaxyError as exc:
        st.warning(f"{cls.one_sentence(exc)} Ask your teacher.")


def ask(galaxy: Galaxy) -> None:
    n = galaxy.position + 1
    left, right = st.columns([3, 2], gap="large")
    with left:
        picture(galaxy, caption=f"Galaxy {n} of {target}, as the Sloan Digital Sky Survey "
                                "photographed it")
    with right:
        st.subheader("Spiral or elliptical?")
        st.markdown("**Spiral**: arms, a flat disk, or a thin line (a disk seen from its "
                    "edge).  \n**Elliptical**: a smooth round or oval glow, no arms.  \n"
                    "Not sure? **Can't tell** is an honest answer.")
        for answer, label, icon in cls.ANSWER_BUTTONS:
            st.button(label, icon=icon, width="stretch", on_click=record,
                      args=(galaxy.position, answer),
                      key=f"answer_{info.id}_{galaxy.position}_{answer}",
                      type="primary" if answer != "cant_tell" else "secondary")


def reveal(galaxy: Galaxy) -> None:
    answer = answers[galaxy.position]
    right_answer = answer == galaxy.label
    left, right = st.columns([3, 2], gap="large")
    with left:
        picture(galaxy, caption=f"Galaxy {galaxy.position + 1} of {target}")
    with right:
        if right_answer:
            st.success(f"You said **{ANSWER_WORDS[answer]}**: the volunteers agree.",
                       icon=":material/check_circle:")
        elif answer == "cant_tell":
            st.info("You said **can't tell**: fair enough, here is what the others said.",
                    icon=":material/help:")
        else:
            st.warning(f"You said **{ANSWER_WORDS[answer]}**: the volunteers saw it "
                       "differently.", icon=":material/cancel:")
        st.markdown(f":material/groups: **The volunteers** said {cls.volunteers_said(galaxy)}  \n"
                    f":material/memory: **The network** said {cls.network_said(galaxy)}"
                    + (" (it agrees with the volunteers)" if galaxy.model_label == galaxy.label
                       else " (the volunteers disagree with it)"))
        cam = store.cam(info.id, galaxy.position)
        if cam:
            st.image(cam, width=288, caption=cls.cam_sentence(galaxy))
        else:
            st.caption("No map was stored for this galaxy.")
        votes = next((v for v in store.votes(info.id) if v["position"] == galaxy.position), None)
        if votes:
            st.caption(f"Your class so far: {votes['spiral']} spiral · {votes['elliptical']} "
                       f"elliptical · {votes['cant_tell']} can't tell")
        last = not [g for g in todo if g.position != galaxy.position]
        st.button("See my results" if last else "Next galaxy", icon=":material/arrow_forward:",
                  type="primary", on_click=next_galaxy, key=f"next_{info.id}_{galaxy.position}")


def summary(closed: bool) -> None:
    if closed:
        st.warning("Your teacher has closed this class: it takes no more answers.",
                   icon=":material/lock:")
    else:
        if not st.session_state.get(CHEERED_KEY):
            st.balloons()
            st.session_state[CHEERED_KEY] = True
        st.success(f"You classified all {target} galaxies. Well done!", icon=":material/star:")
    if not mine.answered:
        return
    a, b, c = st.columns(3)
    a.metric("You vs the volunteers", f"{mine.accuracy:.0%}",
             help=f"{mine.agree} of {mine.answered} answers the same as the volunteers'.")
    b.metric("The network vs the volunteers", f"{mine.model_accuracy:.0%}",
             help=f"On the same {mine.answered} galaxies: {mine.model_agree} the same.")
    c.metric("Can't tell", mine.cant_tell)
    missed = [g for g in galaxies if g.position in mine.missed]
    if not missed:
        st.markdown("You agreed with the volunteers on every galaxy you answered.")
    else:
        st.subheader("The galaxies you saw differently from the volunteers")
        for start in range(0, len(missed), 4):
            for col, galaxy in zip(st.columns(4), missed[start:start + 4]):
                with col:
                    picture(galaxy, width="stretch",
                            caption=f"You: {ANSWER_WORDS[answers[galaxy.position]]} · "
                                    f"volunteers: {galaxy.label} · network: "
                                    f"{galaxy.model_label}")
    st.page_link(cls.LEARN_PAGE, label="Why do people and networks disagree? The Learn page "
                 "explains", icon=":material/school:")


shown = st.session_state.get(REVEAL_KEY)
revealing = (shown is not None and shown[0] == info.id and shown[1] in answers
             and shown[1] < target)
if revealing:
    reveal(galaxies[shown[1]])
elif todo and info.is_open:
    ask(todo[0])
else:
    summary(closed=bool(todo))

"""Teacher: make a class (a name, a galaxy set, how many galaxies each student classifies), give
the students its join code or link, and watch the answers arrive: who has joined and how far they
are, the class's votes per galaxy beside the volunteers' and the network's answers, the galaxies
the class disagreed on most, and a CSV of every answer. Close the class, or delete it.

Only a teacher gets here (``dashboard.access``): the computer running the dashboard, or a tab
that opened a class's teacher link, whose secret leaves the address at once. "Present to the
class" shows only what the projector may show: the join code, the join link and its QR code."""

import secrets
import time

import pandas as pd
import streamlit as st

from dashboard import access, models, paths
from dashboard import classroom as cls
from dashboard.ui import one_line, require_app
from galaxy_core.classroom.limits import MAX_CLASSES_PER_VISITOR, MAX_TARGET
from galaxy_core.classroom.maps import with_cams
from galaxy_core.classroom.results import (ANSWER_WORDS, class_answer, class_score,
                                           export_csv, most_disputed, volunteers_words)
from galaxy_core.classroom.sets import SETS, as_galaxies, choose, test_galaxies, with_images
from galaxy_core.classroom.store import (MAX_CLASS_NAME, ClassInfo, ClassroomError,
                                         clean_class_name)
from galaxy_core.errors import GalaxyError
from galaxy_core.locations import prepared_dir

REFRESH_SECONDS = 3
NEW = "new"
# Session keys (comments, not bare strings: Streamlit's magic would draw those).
SELECT_KEY = "teacher_class"  # the class shown (its id) or NEW
CONFIRM_KEY = "teacher_confirm"  # ("close" or "delete", class id) awaiting a yes
PENDING_KEY = "teacher_show_next"  # a class just made: shown from the next run on
PRESENT_KEY = "teacher_present"  # the projector view: code, join link and QR only

require_app()
st.title("Teacher")
st.caption("Make a class, give your students its code, and watch their answers arrive. "
           "Each student classifies the same galaxies in the same order, then sees what the "
           "Galaxy Zoo volunteers and the network said.")
store = cls.store()
keys: list[str] = access.teacher_keys()

link_key = str(st.query_params.get(cls.TEACHER_PARAM, ""))
if link_key:
    st.query_params.pop(cls.TEACHER_PARAM, None)  # the secret never stays in the address bar
    if link_key not in keys:
        try:
            linked = store.class_for_teacher(link_key)
        except ClassroomError as exc:
            st.error(cls.one_sentence(exc))
        else:
            access.remember_teacher_key(link_key)
            st.session_state[SELECT_KEY] = linked.id

classes: dict[int, ClassInfo] = {}
for key in list(keys):
    try:
        info = store.class_for_teacher(key)
    except ClassroomError:
        keys.remove(key)  # deleted meanwhile
        continue
    classes[info.id] = info
local = access.is_local()
if local:
    for info in store.list_classes():
        classes.setdefault(info.id, info)
if not access.is_teacher():
    st.info("This page belongs to the teacher: open your class's teacher link in this browser, "
            "or use the computer running the dashboard. Students join on the Classroom page.",
            icon=":material/lock:")
    st.page_link(cls.STUDENT_PAGE, label="Join a class on the Classroom page",
                 icon=":material/groups:")
    st.stop()
ordered = sorted(classes.values(), key=lambda c: -c.created)


def class_label(value: object) -> str:
    if value == NEW:
        return "New class…"
    info = classes[value]
    return f"{info.name} · {info.code}" + ("" if info.is_open else " (closed)")


options: list[object] = [NEW] + [c.id for c in ordered]
if st.session_state.get(PENDING_KEY) in options:
    st.session_state[SELECT_KEY] = st.session_state.pop(PENDING_KEY)
if st.session_state.get(SELECT_KEY) not in options:
    st.session_state[SELECT_KEY] = ordered[0].id if ordered else NEW
selected = st.selectbox("Class", options, format_func=class_label, key=SELECT_KEY,
                        help="The classes made in this browser tab or opened with their "
                             "teacher link (on the computer running the dashboard: all of "
                             "them).")


# --- making a class ---------------------------------------------------------------------------
def prepare_hint() -> None:
    if not local:
        st.warning("The prepared galaxy data is missing on the server, so there are no galaxy "
                   "pictures for a class. Prepare it on the computer running the dashboard "
                   "(its Data page has a button), then try again.", icon=":material/dataset:")
        return
    st.warning(f"The prepared galaxy data is missing ({paths.show(prepared_dir())}), so "
               "there are no galaxy pictures for a class. Prepare it once with this command "
               "in the project folder (or with the button on the Data page), then try again.",
               icon=":material/dataset:")
    st.code(paths.prepare_command(), language="bash")


def create(name: str, kind: str, target: int) -> None:
    try:
        name = clean_class_name(name)
    except ClassroomError as exc:
        st.error(cls.one_sentence(exc))
        return
    choice = models.current()
    if choice is None:
        models.no_model_message()
        return
    data = cls.prepared()
    if data is None:
        prepare_hint()
        return
    try:
        table = with_images(data, test_galaxies(data, choice.path))
    except GalaxyError as exc:
        st.error(cls.one_sentence(exc))
        return
    if table.empty:
        st.error("None of this model's test galaxies has its picture in the prepared data; "
                 "prepare the data again" + (" with the command below." if local else "."))
        if local:
            st.code(paths.prepare_command(), language="bash")
        return
    try:
        store.check_room()  # before a minute of Grad-CAM, not after
    except ClassroomError as exc:
        st.error(cls.one_sentence(exc))
        return
    chosen = as_galaxies(choose(table, kind, min(int(target), MAX_TARGET),
                                seed=secrets.randbelow(2**31)))
    loaded = models.load(choice)
    if loaded is None:
        return
    visitor = access.visitor()
    if not local and not access.class_quota().take(visitor):
        st.error(f"A computer other than the dashboard's makes at most "
                 f"{MAX_CLASSES_PER_VISITOR} classes an hour; make more on the computer "
                 "running the dashboard.")
        return
    slot = cls.creation_slot()
    if not slot.acquire(blocking=False):
        if not local:
            access.class_quota().give_back(visitor)
        st.warning("Another class is being made on this server right now; try again in a "
                   "moment.", icon=":material/hourglass_top:")
        return
    try:
        bar = st.progress(0.0, text="Drawing the network's Grad-CAM map of each galaxy, once "
                                    "for the whole class…")
        galaxies = with_cams(loaded, data, chosen, lock=models.lock(loaded),
                             progress=lambda i, n: bar.progress(
                                 i / n, text=f"Grad-CAM maps: {i} of {n}"))
        info = store.create_class(name, kind, int(target), str(choice.path), galaxies)
    except BaseException:
        if not local:
            access.class_quota().give_back(visitor)
        raise
    finally:
        slot.release()
    access.remember_teacher_key(info.teacher_key)
    st.session_state[PENDING_KEY] = info.id  # the selector is drawn already in this run
    st.rerun()


def new_class() -> None:
    st.subheader("Make a class")
    choice = models.current()
    with st.form("new_class"):
        name = st.text_input("Class name", max_chars=MAX_CLASS_NAME,
                             placeholder="for example Year 9, Tuesday")
        kind = st.radio("Galaxy set", SETS, format_func=cls.SET_WORDS.get)
        target = st.number_input("Galaxies per student", 1, MAX_TARGET, 20,
                                 help="Every student gets this many galaxies, the same ones in "
                                      "the same order. About 20 fill 15 minutes.")
        go = st.form_submit_button("Create the class", type="primary")
    st.caption("The galaxies come from the network's test set (it never learned from them), "
               "with its stored answers"
               + (f" ({choice.label}, chosen in the sidebar)" if choice else "")
               + ". Making a class draws each galaxy's Grad-CAM map once, so students never "
                 "wait for the network.")
    if go:
        create(name, kind, int(target))


# --- a class ----------------------------------------------------------------------------------
def big_code(code: str) -> None:
    # The code uses only A-Z and 2-9 (codes.ALPHABET): safe inside HTML.
    st.markdown(f"<div style='font-size:3.4rem;font-weight:700;letter-spacing:.35rem;"
                f"line-height:1.1'>{code}</div>", unsafe_allow_html=True)


def links(info: ClassInfo, qr_width: int = 180) -> None:
    """What students need to join, and nothing else: this is what the projector shows."""
    left, right = st.columns([1, 2], gap="large")
    with left:
        st.caption("Join code")
        big_code(info.code)
        st.caption("Students open the Classroom page and type it, with a nickname.")
    with right:
        join = cls.join_link(info.code)
        _, note = cls.student_address()
        if join:
            st.caption("Join link for students (the code is filled in), or let them scan it")
            st.code(join, language=None)
            st.image(cls.join_qr(join), width=qr_width, caption="Scan to join")
        if note:
            st.warning(note)


def teacher_link(info: ClassInfo) -> None:
    """The class's secret link, folded away: it opens the results, the answers and deletion,
    so it must not be on the projector (a photo of the screen would carry it away)."""
    teach = cls.teacher_link(info.teacher_key)
    if not teach:
        return
    with st.expander("Your teacher link (private: never project it)", icon=":material/key:"):
        st.caption("Bookmark it to reopen these results from another browser. Whoever has it "
                   "can close or delete the class and download every answer.")
        st.code(teach, language=None)


def let_back_in(class_id: int, nickname: str) -> None:
    if store.let_back_in(class_id, nickname):
        st.toast(f"{nickname} can join again with the same nickname.", icon=":material/login:")


def back_in_form(class_id: int, students: list[dict]) -> None:
    """A student who reloaded the page joins again with the same nickname, which is refused
    until the teacher says it is them (the page address no longer carries who they are)."""
    with st.expander("A student reloaded the page? Let them back in", icon=":material/login:"):
        nickname = st.selectbox("Student", [s["nickname"] for s in students],
                                key=f"back_in_{class_id}")
        st.button("Let back in", key=f"back_in_go_{class_id}", on_click=let_back_in,
                  args=(class_id, nickname),
                  help="Their next join with this nickname, from any browser, continues "
                       "where they were. Press it only when they are ready to type it.")


def progress_table(students: list[dict], target: int) -> None:
    if not students:
        st.info("Nobody has joined yet. Students join on the Classroom page with the code.",
                icon=":material/hourglass_empty:")
        return
    frame = pd.DataFrame([{"Student": s["nickname"], "Done": s["answered"],
                           "Agrees with volunteers": (s["agree"] / s["answered"]
                                                      if s["answered"] else None)}
                          for s in students])
    st.dataframe(frame, hide_index=True, width="stretch", column_config={
        "Done": st.column_config.ProgressColumn(f"Done (of {target})", min_value=0,
                                                max_value=target, format="%d"),
        "Agrees with volunteers": st.column_config.NumberColumn(format="percent")})


def votes_table(votes: list[dict], galaxies: dict[int, object]) -> None:
    rows = []
    for v in votes:
        g = galaxies[v["position"]]
        said = class_answer(v)
        rows.append({"#": v["position"] + 1, "Spiral": v["spiral"],
                     "Elliptical": v["elliptical"], "Can't tell": v["cant_tell"],
                     "Class says": ANSWER_WORDS.get(said, said) or "–",
                     "Volunteers": volunteers_words(g),
                     "Network": f"{g.model_label} ({g.p_spiral:.0%} spiral)",
                     "Galaxy (SDSS objid)": g.objid})
    st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch")


def disputed(votes: list[dict], galaxies: dict[int, object]) -> None:
    worst = most_disputed(votes, top=4)
    if not worst:
        st.caption("No disagreements yet: they show up here once two students answer a "
                   "galaxy differently.")
        return
    data = cls.prepared()
    for col, v in zip(st.columns(4), worst):
        g = galaxies[v["position"]]
        with col.container(border=True):
            if data is not None:
                try:
                    st.image(cls.galaxy_picture(data, g), width="stretch")
                except GalaxyError as exc:
                    st.caption(one_line(exc))
            st.markdown(f"**Galaxy {g.position + 1}**: {v['spiral']} spiral · "
                        f"{v['elliptical']} elliptical · {v['cant_tell']} can't tell  \n"
                        f"Volunteers: **{g.label}** · network: **{g.model_label}** "
                        f"({g.p_spiral:.0%} spiral)")


def results(class_id: int) -> None:
    info = store.class_by_id(class_id)
    if info is None:
        st.info("This class has been deleted.")
        return
    galaxies = {g.position: g for g in store.galaxies(class_id, cams=False)}
    students = store.students(class_id)
    votes = store.votes(class_id)
    rows = store.export_rows(class_id)
    whole = class_score(rows)
    done = sum(s["answered"] >= info.target for s in students)
    a, b, c, d = st.columns(4)
    a.metric("Students", len(students), help=f"{done} finished all {info.target} galaxies.")
    b.metric("Answers", whole.answered)
    c.metric("Class vs volunteers", "–" if whole.accuracy is None else f"{whole.accuracy:.0%}",
             help="Share of the class's answers that match the Galaxy Zoo volunteers' label "
                  "(a \"can't tell\" counts as not matching).")
    d.metric("Network vs volunteers", "–" if whole.model_accuracy is None
             else f"{whole.model_accuracy:.0%}",
             help="The network on the very same galaxies, counted once per student answer.")
    st.subheader("Students")
    progress_table(students, info.target)
    if students and info.is_open:
        back_in_form(class_id, students)
    st.subheader("Where the class disagreed most")
    disputed(votes, galaxies)
    st.subheader("Votes per galaxy")
    votes_table(votes, galaxies)
    left, right = st.columns([1, 2], vertical_alignment="center")
    left.download_button("Download every answer (CSV)", export_csv(rows),
                         file_name=f"class_{info.code}_answers.csv", mime="text/csv",
                         icon=":material/download:", key=f"export_{class_id}")
    right.caption(f"Updated {time.strftime('%H:%M:%S')}"
                  + (f"; refreshes every {REFRESH_SECONDS} s while the class is open."
                     if info.is_open else "; the class is closed."))


live_results = st.fragment(run_every=REFRESH_SECONDS)(results)
still_results = st.fragment(results)


def close(class_id: int) -> None:
    store.close_class(class_id)
    st.session_state.pop(CONFIRM_KEY, None)


def delete(class_id: int, teacher_key: str) -> None:
    store.delete_class(class_id)
    if teacher_key in keys:
        keys.remove(teacher_key)
    st.session_state.pop(CONFIRM_KEY, None)
    st.session_state[SELECT_KEY] = NEW


def confirm(what: str, info: ClassInfo) -> None:
    """The second step of closing or deleting: say what it does, then Yes or Cancel."""
    counts = store.students(info.id)
    answers = sum(s["answered"] for s in counts)
    people = (f"{len(counts)} student{'s' * (len(counts) != 1)} and {answers} "
              f"answer{'s' * (answers != 1)}")
    if what == "delete":
        st.warning(f"Delete **{cls.plain(info.name)}** ({info.code}) for good, with its "
                   f"{people}? Download the CSV first if you want to keep them.",
                   icon=":material/warning:")
        action, label, args = delete, "Yes, delete it", (info.id, info.teacher_key)
    else:
        st.warning(f"Close **{cls.plain(info.name)}** ({info.code})? It takes no more answers "
                   f"and cannot be opened again; its {people} are kept.",
                   icon=":material/lock:")
        action, label, args = close, "Yes, close it", (info.id,)
    yes, no, _ = st.columns([1, 1, 3])
    yes.button(label, type="primary", on_click=action, args=args, key=f"{what}_yes_{info.id}")
    no.button("Cancel", on_click=st.session_state.pop, args=(CONFIRM_KEY, None),
              key=f"{what}_no_{info.id}")


def actions(info: ClassInfo) -> None:
    st.divider()
    pending = st.session_state.get(CONFIRM_KEY)
    if pending in (("close", info.id), ("delete", info.id)):
        confirm(pending[0], info)
        return
    left, right, _ = st.columns([1, 1, 3])
    if info.is_open:
        left.button("Close the class…", icon=":material/lock:", key=f"close_{info.id}",
                    help="No more answers; students see their results. Asks first.",
                    on_click=st.session_state.__setitem__, args=(CONFIRM_KEY, ("close", info.id)))
    right.button("Delete the class…", icon=":material/delete:", key=f"delete_{info.id}",
                 help="Removes the class, its students and their answers. Asks first.",
                 on_click=st.session_state.__setitem__, args=(CONFIRM_KEY, ("delete", info.id)))


def present(info: ClassInfo) -> None:
    """The projector's view: the class's name, the join code, link and QR code. No teacher
    link, no nicknames, no buttons."""
    st.subheader(cls.plain(info.name))
    links(info, qr_width=320)


if selected == NEW:
    new_class()
else:
    current = store.class_by_id(selected)
    if current is None:
        st.info("This class has been deleted.")
        st.stop()
    if st.toggle("Present to the class", key=PRESENT_KEY,
                 help="Only the join code, the join link and its QR code, for the projector. "
                      "Switch it off to see the results."):
        present(current)
        st.stop()
    state = "open" if current.is_open else "closed: it takes no more answers"
    st.subheader(cls.plain(current.name))
    st.caption(f"{cls.SET_WORDS.get(current.galaxy_set, current.galaxy_set)} · "
               f"{current.target} galaxies per student · {state} · model "
               f"{access.shown_path(current.model, 'on the server')}")
    links(current)
    teacher_link(current)
    if cls.prepared() is None:
        prepare_hint()
    (live_results if current.is_open else still_results)(current.id)
    actions(current)

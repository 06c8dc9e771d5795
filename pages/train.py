"""Train: start a training run in the background, watch it live, stop or resume it.

Starting, stopping and resuming belong to the computer running the dashboard and to teachers
(``dashboard.access.may_train``; ``GALAXY_ALLOW_TRAINING`` widens or closes that): a student
on another computer sees the runs, not the buttons."""

from dashboard.ui import require_app

require_app()  # first: a page opened on its own reroutes through app.py before any heavy
#                 import (torch, through dashboard.models: ~4 s on a server's first visit)

import time

import pandas as pd
import streamlit as st

from dashboard import access, paths, training
from dashboard.charts import training_curves_figure
from dashboard.ui import guard, one_line
from galaxy_core import locations
from galaxy_core.data.prepared import open_prepared
from galaxy_core.errors import GalaxyError
from galaxy_core.model.build import LITE0, LITE0_EXTRA, available_arches
from galaxy_core.train.run_folder import PROCESS_LOG_FILE, read_history

STATE_ICONS = {"starting": ":material/hourglass_top:", "loading data": ":material/hourglass_top:",
               "training": ":material/autorenew:", "trained": ":material/hourglass_bottom:",
               "evaluating": ":material/science:", "finished": ":material/check_circle:",
               "early_stopped": ":material/check_circle:",
               "interrupted": ":material/pause_circle:", "stopped": ":material/stop_circle:",
               "failed": ":material/error:"}
RELEASE_NOTE = ("Training is done; the release step now fits the temperature, writes the "
                "evaluation reports and the out-of-distribution reference, and saves the model "
                "folder.")

st.title("Train a model")
st.caption("Training runs as a separate process: reload the page, close the tab, come back; the "
           "run keeps going. Every epoch is checkpointed, so a stopped run can be resumed. "
           "Finished runs appear in the sidebar's model selector.")


# --- start a run ------------------------------------------------------------------------------
def start_form(busy: str) -> None:
    """The new-run form; ``busy`` (a run is going and the server allows no more) disables it."""
    data_path = st.selectbox("Prepared dataset", paths.prepared_folders(),
                             format_func=paths.show if local else lambda p: p.name,
                             help="A folder written by `galaxy prepare` (see the Data page).")
    try:
        prepared = open_prepared(data_path)
    except GalaxyError as exc:
        prepared = None
        st.warning(one_line(exc))
        st.page_link("pages/data.py", label="Prepare the data on the Data page",
                     icon=":material/dataset:")
    if "train_name" not in st.session_state:
        st.session_state["train_name"] = time.strftime("run_%Y%m%d_%H%M")
    with st.form("new_run", border=False):
        c1, c2, c3 = st.columns(3)
        name = c1.text_input("Run name", key="train_name")
        arch = c2.selectbox("Network", available_arches(),
                            help="resnet18 trains about three times faster than resnet50 on a CPU. "
                            f"{LITE0} (optional extra: `{LITE0_EXTRA}`) starts from ImageNet "
                            "weights stored on disk.")
        epochs = c3.number_input("Epochs", 1, 200, 3)
        c4, c5, c6 = st.columns(3)
        image_size = c4.select_slider("Image size (px)", [32, 48, 64, 96, 128], value=64)
        max_images = c5.number_input("Training images (0 = all)", 0, 1_000_000, 1000, 100,
                                     help="A cap for quick classroom runs.")
        n_splits = prepared.n_splits if prepared is not None else 1
        split = c6.number_input("Split", 0, max(n_splits - 1, 0), 0,
                                help=f"Which of the {n_splits} prepared split(s) to use.")
        with st.expander("Advanced"):
            a1, a2, a3 = st.columns(3)
            batch = a1.number_input("Batch size", 2, 512, 32)
            lr = a2.number_input("Peak learning rate", 1e-5, 1.0, 2e-3, format="%.4f")
            threads = a3.number_input("CPU threads (0 = all)", 0, 256, 0)
        submitted = st.form_submit_button("Start training", type="primary",
                                          disabled=prepared is None or bool(busy),
                                          icon=":material/play_arrow:")
    if submitted and prepared is not None:
        with guard("Cannot start the run"):
            run_dir = training.check_name(name.strip())
            settings = {"arch": arch, "weights": "imagenet" if arch == LITE0 else None,
                        "epochs": int(epochs), "image_size": int(image_size),
                        "max_train_images": int(max_images), "split": int(split),
                        "batch_size": int(batch), "lr": float(lr),
                        "threads": int(threads) or None}
            pid = training.start(data_path, run_dir, settings)  # checks the limit again
            st.session_state["watch_run"] = run_dir.name
            del st.session_state["train_name"]
            st.toast(f"Started {run_dir.name} (process {pid})", icon=":material/play_arrow:")
            st.rerun()


local = access.is_local()
allowed = access.may_train() and training.training_allowed()
if allowed:
    busy_now = training.busy_message()
    if busy_now:
        st.warning(busy_now[0].upper() + busy_now[1:] + ".", icon=":material/hourglass_top:")
    with st.expander("Start a new run", expanded=not training.list_runs()):
        start_form(busy_now)
elif access.training_mode() == "off":
    st.info(f"{training.busy_message()} This page only shows the runs in "
            f"{access.shown_path(locations.runs_dir(), 'the runs folder')}: start them with "
            "`galaxy train` on the server, and pick finished ones in the sidebar's model "
            "selector.", icon=":material/block:")
else:
    st.info("Starting, stopping and resuming training runs belong to the computer running "
            "the dashboard (and to a teacher who opened a class's teacher link in this "
            "browser): here you can watch the runs, and pick finished ones in the sidebar's "
            f"model selector. To let every visitor train, start the dashboard with "
            f"{access.TRAINING_ENV}=all.", icon=":material/lock:")


# --- watch runs --------------------------------------------------------------------------------
SEEN_KEY = "train_seen_steps"  # run -> [(step, time written)]: two writes give the step speed


def progress_text(info: training.RunInfo, rows: list[dict]) -> tuple[float, str, bool]:
    """The progress bar's fraction and line for a run, and whether the step is estimated."""
    s = info.status
    state = info.state
    detail = [f"{STATE_ICONS.get(state, '')} **{state}**"]
    if s.get("epochs"):
        detail.append(f"epoch {s.get('epoch') or 0} of {s['epochs']}")
    seen = st.session_state.setdefault(SEEN_KEY, {}).setdefault(info.name, [])
    step, estimated = training.live_step(info, rows, seen)
    fraction = info.fraction
    if s.get("total_steps"):
        total = int(s["total_steps"])
        detail.append(f"{'about ' if estimated else ''}step {int(step)} of {total}")
        if estimated:
            fraction = max(fraction, min(1.0, step / total))
    if s.get("train_loss") is not None:
        detail.append(f"train loss {float(s['train_loss']):.3f}")
    started = s.get("started")
    if info.active and started:
        detail.append(f"running for {training.clock(time.time() - float(started))}")
    seconds = [float(r["seconds"]) for r in rows if r.get("seconds")]
    if info.active and state == "training" and seconds and s.get("epochs"):
        left = (1 - fraction) * float(s["epochs"]) * sum(seconds) / len(seconds)
        detail.append(f"about {max(left / 60, 1):.0f} min left")
    done = info.has_model or info.loop_done
    return 1.0 if done else fraction, " · ".join(detail), estimated


def watch(name: str) -> None:
    with guard():
        info = training.run_info(locations.runs_dir() / name)
        seen = f"seen_active_{name}"
        if info.active:
            st.session_state[seen] = True
        elif st.session_state.pop(seen, False):
            st.rerun(scope="app")  # it just ended: refresh the sidebar's model list
        rows = read_history(info.path)
        fraction, text, estimated = progress_text(info, rows)
        st.progress(fraction, text=text)
        if estimated:
            st.caption(f"The run writes its step every {training.STATUS_EVERY} steps; the step "
                       "in between is estimated from its speed.")
        if info.active and info.loop_done:
            st.caption(RELEASE_NOTE)

        if info.error:
            st.error(f"Failed: {one_line(info.error, 600)}", icon=":material/error:")
        b1, b2, _ = st.columns([1, 1, 4])
        if allowed and info.alive and b1.button(
                "Stop", icon=":material/stop:", key=f"stop_{name}",
                help="Ctrl-C for the run: it stops and keeps its last finished epoch (none "
                     "while the first epoch runs)."):
            if training.stop(info):
                st.toast(f"Stopping {name}…", icon=":material/stop:")
        busy = training.busy_message() if allowed and info.can_resume else ""
        if allowed and info.can_resume and b2.button(
                "Resume", icon=":material/play_arrow:", key=f"resume_{name}",
                disabled=bool(busy), help=busy or None):
            training.resume(info)  # checks the limit again
            st.rerun(scope="app")
        if busy:
            st.caption(f"Resume waits: {busy}.")

        if rows:
            st.plotly_chart(training_curves_figure(rows), key=f"curves_{name}")
            st.caption("Validation loss and accuracy are measured after every epoch; the "
                       "best-validation-loss epoch becomes the model.")
        else:
            st.caption("The loss and accuracy curves appear after the first epoch.")
        if info.has_model:
            st.success(f"Finished: pick “Run {name}” in the sidebar's model selector.")
            st.page_link("pages/evaluate.py", label="Evaluate it", icon=":material/analytics:")
        elif info.can_resume and info.loop_done:
            st.info("Stopped after training, before the model folder was written. Resume "
                    "writes it from the best epoch.")
        elif info.can_resume and info.error:
            st.info("Fix the cause (e.g. make room on the disk). " + training.stopped_note(rows))
        elif info.can_resume:
            st.info("Stopped. " + training.stopped_note(rows))
        if local:  # the output names the server's folders
            with st.expander(f"Process output ({PROCESS_LOG_FILE})"):
                st.code(training.log_tail(info.path) or "(nothing yet)", language=None)


def overview() -> None:
    """The runs table, redrawn with the watched run while any run is alive (it showed
    "starting 0/3" while the run trained when it was drawn once per page run)."""
    runs = training.list_runs()
    table = pd.DataFrame([{
        "run": r.name, "state": r.state,
        "epoch": f"{r.status.get('epoch') or 0}/{r.status.get('epochs') or '?'}",
        "progress": 1.0 if r.has_model or r.loop_done else r.fraction,
        "best val accuracy": max((h.get("val_accuracy") or 0 for h in read_history(r.path)),
                                 default=None),
    } for r in runs])
    st.dataframe(table, hide_index=True, column_config={
        "progress": st.column_config.ProgressColumn("Progress", min_value=0, max_value=1,
                                                    format="percent"),
        "best val accuracy": st.column_config.NumberColumn(format="%.3f")})


runs = training.list_runs()
st.subheader("Runs")
if not runs:
    st.info(f"No runs yet in {access.shown_path(locations.runs_dir(), 'the runs folder')}."
            + (" Start one above." if allowed else ""))
    st.stop()
any_alive = any(r.alive for r in runs)
st.fragment(run_every=2.0 if any_alive else None)(overview)()

names = [r.name for r in runs]
if st.session_state.get("watch_run") not in names:
    active = [r.name for r in runs if r.active]
    st.session_state["watch_run"] = active[0] if active else names[0]
chosen = st.selectbox("Watch", names, key="watch_run")
live = training.run_info(locations.runs_dir() / chosen).alive
st.fragment(run_every=1.0 if live else None)(watch)(chosen)

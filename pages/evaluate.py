"""Evaluate: the selected model's stored evaluation report, drawn interactively."""

from dashboard.ui import require_app

require_app()  # first: a page opened on its own reroutes through app.py before any heavy
#                 import (torch, through dashboard.models: ~4 s on a server's first visit)

import pandas as pd
import streamlit as st

from dashboard import explain, models, paths
from dashboard.charts import (confusion_matrix_figure, coverage_figure, reliability_figure,
                              roc_figure, splits_figure, training_curves_figure)
from galaxy_core.evaluate.report import selective_block
from galaxy_core.locations import prepared_dir
from galaxy_core.release.model_card import describe_recipe

HELP = {
    "accuracy": "The share of galaxies given the right class.",
    "balanced": "Mean recall over the classes: not flattered by the many ellipticals.",
    "macro_f1": "F1 (the balance of precision and recall) computed per class, then averaged, "
                "so the rarer spirals count as much as the ellipticals.",
    "roc_auc": "Area under the ROC curve: the chance that a random spiral gets a higher "
               "P(spiral) than a random elliptical (0.5: guessing, 1: perfect ranking).",
    "ece": "Expected calibration error: the average gap between the confidence the model "
           "states and how often it is right at that confidence (0: it means what it says).",
    "temperature": "Temperature scaling divides the network's scores by one number T, fitted "
                   "on the validation set, so that its stated confidence matches its accuracy; "
                   "it never changes which class wins.",
}
CELL_OPENED_KEY = "evaluate_cell_opened"  # the cell-table selection whose dialog was opened


st.title("How good is the model?")
choice = models.current()
if choice is None:
    models.no_model_message()
    st.stop()
meta = models.read_meta(choice)

parts = models.report_parts(choice)
if not parts:
    st.warning(f"{paths.show(choice.path)} has no evaluation report. Create one with: "
               f"`galaxy evaluate --model {paths.show(choice.path)} --data "
               f"{paths.show(prepared_dir())}`")
    st.stop()
part = st.segmented_control("Evaluated on", parts, default=parts[0],
                            format_func=lambda p: {"test": "Test set (held out)",
                                                   "val": "Validation set"}[p]) or parts[0]
report = models.report(choice, part)
cal, unc = report["calibrated"], report["uncalibrated"]
m = cal["metrics"]
classes = report["classes"]
st.caption(f"{report['n']} galaxies of the {part} set"
           + (f", split {report['split']}" if "split" in report else "")
           + ". Numbers use the calibrated probabilities the Classify page shows.")

cols = st.columns(5)
cols[0].metric("Accuracy", f"{m['accuracy']:.1%}", help=HELP["accuracy"])
cols[1].metric("Balanced accuracy", f"{m['balanced_accuracy']:.1%}", help=HELP["balanced"])
cols[2].metric("Macro-F1", f"{m['macro_f1']:.3f}", help=HELP["macro_f1"])
cols[3].metric("ROC AUC", "n/a" if m.get("roc_auc") is None else f"{m['roc_auc']:.3f}",
               help=HELP["roc_auc"])
cols[4].metric("ECE", f"{cal['ece']:.3f}", f"{cal['ece'] - unc['ece']:+.3f} vs uncalibrated",
               delta_color="inverse", help=HELP["ece"])

left, right = st.columns(2)
with left:
    st.subheader("Confusion matrix")
    normalise = st.toggle("Show row percentages (recall per class)", value=True)
    st.plotly_chart(confusion_matrix_figure(report, normalise), key="confusion")
    st.caption("Rows are the Galaxy Zoo labels, columns the model's answers; hover for counts.")
with right:
    st.subheader("Per class")
    per_class = pd.DataFrame(m["per_class"]).T.reset_index(names="class")
    number = {"format": "%.3f", "width": "small"}  # plain numbers: five columns fit a half page
    st.dataframe(per_class, hide_index=True, width="stretch", column_config={
        "class": st.column_config.TextColumn("Class"),
        "precision": st.column_config.NumberColumn("Precision", **number,
                                                   help="Of the galaxies given this class, the "
                                                        "fraction that are it."),
        "recall": st.column_config.NumberColumn("Recall", **number,
                                                help="Of the galaxies of this class, the "
                                                     "fraction found."),
        "f1": st.column_config.NumberColumn("F1", **number, help="The harmonic mean of "
                                            "precision and recall."),
        "support": st.column_config.NumberColumn("Galaxies", format="%d", width="small")})
    with st.expander("List the galaxies in one cell of the matrix"):
        a, b = st.columns(2)
        true = a.selectbox("Labelled", classes)
        guess = b.selectbox("Predicted", classes, index=min(1, len(classes) - 1))
        positive = f"p_{classes[1]}"
        cell = [r for r in report.get("predictions", [])
                if r["true"] == true and r["predicted"] == guess]
        images = paths.report_images(report)
        if images.missing:  # a survey's images are not here (GZ2 on a fresh clone)
            shown = [r for r in cell if images.has(r.get("image"))]
            st.caption(f"{len(cell) - len(shown)} of the {len(cell)} come from "
                       f"{' and '.join(images.missing)}, whose images are not on this machine; "
                       "the others are listed.")
            cell = shown
        cell.sort(key=lambda r: -abs(float(r[positive]) - 0.5))
        cell_table = pd.DataFrame(
            [{"objid": r["objid"], positive: float(r[positive])} for r in cell],
            columns=["objid", positive])
        cell_key = f"evaluate_cell_{true}_{guess}"
        event = st.dataframe(
            cell_table, hide_index=True, height=240, width="stretch", on_select="rerun",
            selection_mode="single-row", key=cell_key, column_config={
                "objid": st.column_config.TextColumn("SDSS objid"),
                positive: st.column_config.ProgressColumn(f"P({classes[1]})", format="%.3f",
                                                          min_value=0, max_value=1)})
        st.caption(f"{len(cell)} galaxies, most confident first: select a row to open the "
                   "galaxy (full cutout, Grad-CAM, Galaxy Zoo subclass, SkyServer page).")
        picked = tuple(event.selection.rows) if event is not None else ()
        if not picked:
            st.session_state.pop(CELL_OPENED_KEY, None)
        elif st.session_state.get(CELL_OPENED_KEY) != (cell_key, picked) \
                and picked[0] < len(cell):
            st.session_state[CELL_OPENED_KEY] = (cell_key, picked)
            row = cell[picked[0]]
            p = float(row[positive])
            row = {**row, f"p_{classes[0]}": 1 - p, "confidence": max(p, 1 - p)}

            @st.dialog("Galaxy details", width="large")
            def details(row: dict) -> None:
                loaded = models.load(choice)
                if loaded is not None:
                    explain.show_galaxy(loaded, models.model_key(loaded), row, classes,
                                        images)

            details(row)
        st.page_link("pages/failures.py", label="See failures with their Grad-CAM",
                     icon=":material/report:")

by_source = report.get("by_source") or {}
if len(by_source) > 1:  # a model trained on several surveys: each one's own figures
    st.subheader("By survey")
    st.dataframe(pd.DataFrame([{
        "survey": name, "galaxies": block["n"], "accuracy": block["accuracy"],
        "balanced": block["balanced_accuracy"], "macro_f1": block["macro_f1"],
        "spiral_recall": (block.get("recall") or {}).get("spiral"),
        "elliptical_recall": (block.get("recall") or {}).get("elliptical"),
        "roc_auc": block.get("roc_auc"), "ece": block.get("ece")}
        for name, block in by_source.items()]), hide_index=True, width="stretch",
        column_config={
            "survey": st.column_config.TextColumn("Survey"),
            "galaxies": st.column_config.NumberColumn("Galaxies"),
            "accuracy": st.column_config.NumberColumn("Accuracy", format="percent",
                                                      help=HELP["accuracy"]),
            "balanced": st.column_config.NumberColumn("Balanced accuracy", format="percent",
                                                      help=HELP["balanced"]),
            "macro_f1": st.column_config.NumberColumn("Macro-F1", format="%.3f",
                                                      help=HELP["macro_f1"]),
            "spiral_recall": st.column_config.NumberColumn("Spiral recall", format="%.3f"),
            "elliptical_recall": st.column_config.NumberColumn("Elliptical recall",
                                                               format="%.3f"),
            "roc_auc": st.column_config.NumberColumn("ROC AUC", format="%.3f",
                                                     help=HELP["roc_auc"]),
            "ece": st.column_config.NumberColumn("ECE", format="%.3f", help=HELP["ece"])})
    st.caption("The same answers, survey by survey. Galaxy Zoo 1's labels are majority votes "
               "with no agreement cut; Galaxy Zoo 2's are its confident classes, so its figures "
               "run higher. One temperature calibrates both: compare the ECE of each.")

left, right = st.columns(2)
with left:
    st.subheader("Reliability")
    st.plotly_chart(reliability_figure(report), key="reliability")
    st.caption(f"When the model says 80 %, is it right 80 % of the time? Temperature scaling "
               f"(T = {report['temperature']:.2f}, fitted on the validation set) moves the "
               "curve towards the diagonal. The bars count the galaxies in each confidence "
               "bin after scaling.", help=HELP["temperature"])
with right:
    st.subheader("ROC curve")
    st.plotly_chart(roc_figure(report), key="roc")
    st.caption(f"'{classes[1]}' as the positive class; hover for the probability threshold.",
               help=HELP["roc_auc"])

selective = selective_block(report)
if selective:
    st.subheader("Accepting only confident answers")
    left, right = st.columns([3, 2])
    with left:
        st.plotly_chart(coverage_figure(selective), key="coverage")
    with right:
        hits = {t: h for t, h in selective["at_accuracy"].items() if h}
        for target, hit in hits.items():
            st.metric(f"Share kept at {float(target):.0%} accuracy", f"{hit['coverage']:.0%}",
                      help=f"Accept answers with p ≥ {hit['threshold']:.3f}.")
        st.caption("A survey can take the answers the model is surest of and send the rest "
                   "to volunteers: the curve shows what that trade is worth on this set. "
                   + ("" if hits else "No share of this set reaches 95% accuracy."))

spread = models.splits_summary(choice, meta)
if spread:
    st.subheader("Spread across splits")
    st.plotly_chart(splits_figure(spread), key="splits")
    n = max(len(v.get("values", [])) for v in spread.values())
    how = (describe_recipe(meta["splits_recipe"]).rstrip(":") if meta.get("splits_recipe")
           else f"Mean ± standard deviation over {n} independent train/val/test splits")
    st.caption(f"{how}. It shows how much of a difference between models is luck of the split.",
               help=" ".join(f"**{name}**: {HELP[key]}" for name, key in (
                   ("accuracy", "accuracy"), ("balanced accuracy", "balanced"),
                   ("macro F1", "macro_f1"), ("roc auc", "roc_auc"), ("ece", "ece"))))

history = (meta.get("training") or {}).get("history") or []
with st.expander("How this model was trained", expanded=False):
    if history:
        st.plotly_chart(training_curves_figure(history), key="history")
    training = meta.get("training") or {}
    cfg = meta.get("config") or {}
    st.caption(f"{meta.get('arch', '?')}, {meta.get('input_size', '?')} px input, "
               f"{training.get('epochs_run', len(history))} epochs, "
               f"{training.get('n_train', '?')} training galaxies, batch "
               f"{cfg.get('batch_size', '?')}, lr {cfg.get('lr', '?')}; folder "
               f"{paths.show(choice.path)}")

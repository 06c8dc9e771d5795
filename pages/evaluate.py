"""Evaluate: the selected model's stored evaluation report, drawn interactively."""

import pandas as pd
import streamlit as st

from dashboard import models, paths
from dashboard.charts import (confusion_matrix_figure, coverage_figure, reliability_figure,
                              roc_figure, splits_figure, training_curves_figure)
from dashboard.ui import require_app
from galaxy_core.evaluate.report import selective_block
from galaxy_core.locations import prepared_dir
from galaxy_core.release.model_card import describe_recipe

require_app()

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
cols[0].metric("Accuracy", f"{m['accuracy']:.1%}")
cols[1].metric("Balanced accuracy", f"{m['balanced_accuracy']:.1%}",
               help="Mean recall over the classes: not flattered by the many ellipticals.")
cols[2].metric("Macro-F1", f"{m['macro_f1']:.3f}")
cols[3].metric("ROC AUC", "n/a" if m.get("roc_auc") is None else f"{m['roc_auc']:.3f}")
cols[4].metric("ECE", f"{cal['ece']:.3f}", f"{cal['ece'] - unc['ece']:+.3f} vs uncalibrated",
               delta_color="inverse",
               help="Expected calibration error: the average gap between confidence and accuracy.")

left, right = st.columns(2)
with left:
    st.subheader("Confusion matrix")
    normalise = st.toggle("Show row percentages (recall per class)", value=True)
    st.plotly_chart(confusion_matrix_figure(report, normalise), key="confusion")
    st.caption("Rows are the Galaxy Zoo labels, columns the model's answers; hover for counts.")
with right:
    st.subheader("Per class")
    per_class = pd.DataFrame(m["per_class"]).T.reset_index(names="class")
    bar = {"min_value": 0.0, "max_value": 1.0, "format": "%.3f", "width": "small"}
    st.dataframe(per_class, hide_index=True, column_config={
        "precision": st.column_config.ProgressColumn("Precision", **bar,
                                                     help="Of the galaxies given this class, "
                                                          "the fraction that are it."),
        "recall": st.column_config.ProgressColumn("Recall", **bar,
                                                  help="Of the galaxies of this class, the "
                                                       "fraction found."),
        "f1": st.column_config.ProgressColumn("F1", **bar),
        "support": st.column_config.NumberColumn("Galaxies", format="%d", width="small")})
    with st.expander("List the galaxies in one cell of the matrix"):
        a, b = st.columns(2)
        true = a.selectbox("Labelled", classes)
        guess = b.selectbox("Predicted", classes, index=min(1, len(classes) - 1))
        rows = [r for r in report.get("predictions", [])
                if r["true"] == true and r["predicted"] == guess]
        st.dataframe(pd.DataFrame(rows), hide_index=True, height=240)
        st.page_link("pages/failures.py", label="See failures with their Grad-CAM",
                     icon=":material/report:")

left, right = st.columns(2)
with left:
    st.subheader("Reliability")
    st.plotly_chart(reliability_figure(report), key="reliability")
    st.caption(f"When the model says 80 %, is it right 80 % of the time? Temperature scaling "
               f"(T = {report['temperature']:.2f}, fitted on the validation set) moves the "
               "curve towards the diagonal.")
with right:
    st.subheader("ROC curve")
    st.plotly_chart(roc_figure(report), key="roc")
    st.caption(f"'{classes[1]}' as the positive class; hover for the probability threshold.")

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
    st.caption(f"{how}. It shows how much of a difference between models is luck of the split.")

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

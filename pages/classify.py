"""Classify: upload galaxy images (or pick examples) and see class, calibrated probability and
Grad-CAM for each."""

import hashlib
from pathlib import Path

import pandas as pd
import streamlit as st

from dashboard import models, paths
from dashboard.charts import probability_figure
from dashboard.explain import cam_caption, cam_overlay
from dashboard.ui import one_line, require_app, thumbnail, upscale
from galaxy_core.data.imageio import GZIP_SUFFIX, IMAGE_SUFFIXES, read_image
from galaxy_core.errors import GalaxyError
from galaxy_core.evaluate.report import validation_threshold
from galaxy_core.locations import default_data_root
from galaxy_core.predict.classify import classify_sources
from galaxy_core.predict.survey_match import prepare_for_model

UPLOAD_TYPES = [suffix.lstrip(".") for suffix in (*IMAGE_SUFFIXES, GZIP_SUFFIX)]
SURVEY_HELP = ("The network learned from SDSS cutouts. **auto** rescales only images that do not "
               "look like one (e.g. Hubble or amateur images: re-framed, blurred and given SDSS "
               "sky noise); **on** always does; **off** never does.")

ACCEPT_AT = 0.95


@st.cache_data(show_spinner=False)
def accept_threshold(model_path: str, version: float | None) -> float | None:
    """The validation confidence threshold for ACCEPT_AT accuracy; None when the model has no
    validation report or never reaches it (the page then simply says nothing about it).
    ``version`` (the report's stamp) keys the cache, so a re-evaluated model is not served stale."""
    try:
        return validation_threshold(Path(model_path), ACCEPT_AT)
    except GalaxyError:
        return None


require_app()
st.title("Classify a galaxy")
st.caption("Upload images from any telescope (JPEG, PNG, TIFF, FITS) or try the examples. "
           "Each gets a class, a calibrated probability and a Grad-CAM map of what drove it.")

choice, loaded = models.current_loaded()

left, right = st.columns([2, 1])
source = left.radio("Images from", ["Upload", "Examples"], horizontal=True,
                    label_visibility="collapsed")
survey = right.segmented_control("Survey matching", ["auto", "on", "off"], default="auto",
                                 help=SURVEY_HELP) or "auto"

items: list[tuple[str, bytes]] = []
known: dict[str, str] = {}
if source == "Upload":
    uploads = st.file_uploader("Galaxy images", type=UPLOAD_TYPES, accept_multiple_files=True,
                               help="One or many files; a batch can be downloaded as CSV.")
    items = [(u.name, u.getvalue()) for u in uploads or []]
else:
    examples = paths.examples()
    if not examples:
        st.warning(f"No example galaxies found in {paths.show(default_data_root())}. "
                   + paths.set_data_hint())
    else:
        names = [e[0] for e in examples]
        picked = st.multiselect("Example galaxies", names, default=names[:1],
                                help="Seed examples (telescope images and GZ2 cutouts) and "
                                     "unlabelled Galaxy Zoo 2 cutouts for batch prediction.")
        lookup = {e[0]: e[1] for e in examples}
        known = {e[1].name: e[2] for e in examples if e[2]}
        items = [(lookup[n].name, lookup[n].read_bytes()) for n in picked]

if not items:
    st.info("Add one or more images to classify them.")
    st.stop()

key = (models.model_key(loaded), survey,
       tuple((n, hashlib.sha1(b).hexdigest()) for n, b in items))
if st.session_state.get("classify_key") != key:
    bar = st.progress(0.0, text=f"Classifying {len(items)} image(s)…")

    def progress(done: int, total: int) -> None:
        bar.progress(done / max(total, 1), text=f"Classified {done} of {total}")

    with models.lock(loaded):
        preds = classify_sources(loaded, items, survey=survey, batch_size=8, progress=progress,
                                 keep_inputs=True)
    bar.empty()
    st.session_state["classify_key"] = key
    st.session_state["classify_preds"] = preds
preds = st.session_state["classify_preds"]
raw = dict(items)

failed = [p for p in preds if not p.ok]
for p in failed[:10]:
    st.error(f"{p.source} could not be classified: {one_line(p.error)}")
if len(failed) > 10:
    st.error(f"…and {len(failed) - 10} more files could not be classified (see the CSV).")
ok = [p for p in preds if p.ok]

if len(preds) > 1:
    st.subheader(f"Batch: {len(ok)} classified, {len(failed)} failed")
    table = pd.DataFrame([p.row() for p in preds])
    view = table.copy()
    for col in ("p_spiral", "p_elliptical", "ood_score"):
        view[col] = pd.to_numeric(view[col], errors="coerce")
    view["survey_matched"] = view["survey_matched"].map({1: "yes", 0: "no"}).fillna("")
    st.dataframe(view, hide_index=True, column_config={
        "p_spiral": st.column_config.ProgressColumn("P(spiral)", format="%.3f", min_value=0,
                                                    max_value=1),
        "p_elliptical": st.column_config.ProgressColumn("P(elliptical)", format="%.3f",
                                                        min_value=0, max_value=1),
        "ood_score": st.column_config.NumberColumn("OOD score", format="%.2f",
                                                   help="Above 1: unlike the training galaxies")})
    st.download_button("Download results (CSV)", table.to_csv(index=False).encode(),
                       file_name="galaxy_predictions.csv", mime="text/csv",
                       icon=":material/download:")

if not ok:
    st.stop()
names = [p.source for p in ok]
shown = st.selectbox("Show details for", names) if len(ok) > 1 else names[0]
pred = ok[names.index(shown)]

st.subheader(shown)
explain = st.segmented_control(
    "Grad-CAM explains", list(loaded.classes), default=pred.label, key=f"explain_{shown}",
    help="Which class the heat map explains: by default the predicted one.") or pred.label
cfg = loaded.config
c1, c2, c3 = st.columns([1, 1, 1.2])
c1.image(upscale(pred.model_input), alt="Model input",
         caption=f"As the model sees it: centre {cfg.crop_fraction:.0%} crop, resized to "
                 f"{cfg.image_size} px" + (", survey-matched" if pred.survey_matched else ""))
with st.spinner("Computing Grad-CAM…"):
    cam = cam_overlay(loaded, models.model_key(loaded), pred.model_input,
                      loaded.classes.index(explain))
c2.image(upscale(cam), alt="Grad-CAM overlay", caption=cam_caption(explain))
with c3:
    confidence = max(pred.p_spiral, pred.p_elliptical)
    st.metric("Predicted class", pred.label.capitalize(), f"{confidence:.1%} probability",
              delta_color="off", delta_arrow="off")
    if known.get(shown):
        agree = "agrees" if known[shown] == pred.label else "disagrees"
        st.caption(f"The example set labels it **{known[shown]}**: the model {agree}.")
    st.plotly_chart(probability_figure({"spiral": pred.p_spiral,
                                        "elliptical": pred.p_elliptical}), key="probs")
    st.caption(f"Probabilities after prior correction and temperature scaling "
               f"(T = {loaded.temperature:.2f}), averaged over 8 rotations and flips.")
    if pred.unusual:
        st.warning(f"Unusual input (OOD score {pred.ood_score:.2f} > 1): this image looks unlike "
                   "the training galaxies, so treat the label with caution.")
    else:
        if pred.ood_score is not None:
            st.caption(f"OOD score {pred.ood_score:.2f} (1 or below: like the training "
                       "galaxies).")
        threshold = accept_threshold(str(loaded.path),
                                     models.report_version(Path(loaded.path), "val"))
        if threshold is not None:
            sure = pred.accepted(threshold)
            st.caption((":material/check: Confident" if sure else ":material/help: Not confident")
                       + f" at the {ACCEPT_AT:.0%} level: on validation, answers with p ≥ "
                       f"{threshold:.3f} were {ACCEPT_AT:.0%} accurate"
                       + ("." if sure else "; this one is worth a human look."))
    for note in pred.notes:
        st.caption(f"Loader: {note}")

if pred.survey_matched and shown in raw:
    with st.expander("Survey matching: original and as given to the model", expanded=False):
        try:
            original = read_image(raw[shown]).image
            matched, _ = prepare_for_model(original, survey)
        except Exception as exc:  # display only; the prediction above already succeeded
            st.warning(f"Cannot show the matching steps: {one_line(exc)}")
        else:
            a, b = st.columns(2)
            a.image(thumbnail(original), caption=f"Original ({original.width}×{original.height})")
            b.image(thumbnail(matched), caption="Re-framed, blurred and given SDSS sky noise")

if len(preds) == 1:
    single = pd.DataFrame([p.row() for p in preds])
    st.download_button("Download result (CSV)", single.to_csv(index=False).encode(),
                       file_name="galaxy_prediction.csv", mime="text/csv",
                       icon=":material/download:")

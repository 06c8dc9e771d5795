"""Classify: upload galaxy images (or pick examples) and see class, calibrated probability and
Grad-CAM for each."""

import hashlib
from pathlib import Path

import pandas as pd
import streamlit as st

from dashboard import memory, models, paths, uploads
from dashboard.charts import probability_figure
from dashboard.explain import cam_caption, cam_overlay
from dashboard.ui import one_line, require_app, thumbnail, upscale
from galaxy_core.data.imageio import GZIP_SUFFIX, IMAGE_SUFFIXES, read_image
from galaxy_core.errors import GalaxyError
from galaxy_core.evaluate.report import validation_threshold
from galaxy_core.locations import default_data_root
from galaxy_core.predict.classify import Prediction, classify_sources
from galaxy_core.predict.inputs import ESCAPED_NOTE
from galaxy_core.predict.survey_match import prepare_for_model

UPLOAD_TYPES = [suffix.lstrip(".") for suffix in (*IMAGE_SUFFIXES, GZIP_SUFFIX)]
SURVEY_HELP = ("The network learned from SDSS cutouts. **auto** rescales only images that do not "
               "look like one (e.g. Hubble or amateur images: re-framed, blurred and given SDSS "
               "sky noise); **on** always does; **off** never does.")

ACCEPT_AT = 0.95
# Session keys (bare strings would be drawn on the page by Streamlit's magic, hence comments):
FRAMED_KEY = "framed_uploads"  # file id -> uploads.FramedUpload, large uploads already decoded
UPLOADER_KEY = "classify_uploads"  # the file uploader's value
VIEWS_KEY = "classify_views"  # survey-matching thumbnails drawn for the current results


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


def frame_large_uploads(files: list) -> None:
    """Decode each large upload not yet framed, one server-wide slot at a time, keep its framed
    copy in the session and give its bytes back to Streamlit's upload store; then rerun, so that
    no widget value of this run still holds the bytes."""
    framed = st.session_state[FRAMED_KEY]
    status = st.empty()
    for n, upload in enumerate(files, start=1):
        size = f"{upload.size / 1e6:.0f} MB"  # decimal, as the upload widget shows it

        def queued(ahead: int, name: str = upload.name, size: str = size) -> None:
            others = "another large file" if ahead == 1 else f"{ahead} other large files"
            status.info(f"{name} ({size}) is queued with {others}: this server reads large "
                        "files one at a time, to keep its memory in bounds. It starts by "
                        "itself.", icon=":material/hourglass_top:")

        with uploads.decode_slot(queued):
            status.info(f"Reading {upload.name} ({size}, {n} of {len(files)})…",
                        icon=":material/hourglass_top:")
            framed[upload.file_id] = uploads.frame_upload(upload.name, upload.getvalue())
            uploads.release(upload, st.session_state.get(UPLOADER_KEY))
    status.empty()
    memory.give_back(force=True)
    st.rerun()


items: list[tuple[str, bytes]] = []
known: dict[str, str] = {}
framed_items: dict[str, uploads.FramedUpload] = {}
if source == "Upload":
    files = st.file_uploader("Galaxy images", type=UPLOAD_TYPES, accept_multiple_files=True,
                             key=UPLOADER_KEY, help="One or many files; a batch can be downloaded as CSV. Files "
                                  f"over {uploads.LARGE_UPLOAD_BYTES // 10**6} MB are read one "
                                  "at a time on this server.") or []
    files = [f for f in files if hasattr(f, "getvalue")]  # not a file deleted meanwhile
    framed = st.session_state.setdefault(FRAMED_KEY, {})
    for gone in set(framed) - {f.file_id for f in files}:
        del framed[gone]  # removed from the widget
    large = [f for f in files if f.file_id not in framed and f.size > uploads.LARGE_UPLOAD_BYTES]
    if large:
        frame_large_uploads(large)
    for f in files:
        if f.file_id in framed:
            framed_items[f.name] = framed[f.file_id]
            items.append((f.name, framed[f.file_id].png))
        else:
            items.append((f.name, f.getvalue()))
    del files, large
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


def digest(name: str, data: bytes) -> str:
    framed_copy = framed_items.get(name)
    return framed_copy.digest or framed_copy.error if framed_copy else \
        hashlib.sha1(data).hexdigest()


def classify(items: list[tuple[str, bytes]]) -> list[Prediction]:
    """Predictions in upload order; a large upload is classified from its framed copy and
    keeps the loader's notes on the original file (or its one-line error)."""
    readable = [(n, b) for n, b in items if not (n in framed_items and framed_items[n].error)]
    bar = st.progress(0.0, text=f"Classifying {len(items)} image(s)…")

    def progress(done: int, total: int) -> None:
        bar.progress(done / max(total, 1), text=f"Classified {done} of {total}")

    with models.lock(loaded):
        done = iter(classify_sources(loaded, readable, survey=survey, batch_size=8,
                                     progress=progress, keep_inputs=True))
    bar.empty()
    preds = []
    for name, _ in items:
        copy = framed_items.get(name)
        if copy is not None and copy.error:
            preds.append(Prediction(source=name, error=copy.error))
            continue
        pred = next(done)
        if copy is not None:
            pred.notes = [n for n in pred.notes if n == ESCAPED_NOTE] + copy.notes
        preds.append(pred)
    return preds


key = (models.model_key(loaded), survey, tuple((n, digest(n, b)) for n, b in items))
if st.session_state.get("classify_key") != key:
    st.session_state["classify_preds"] = classify(items)
    st.session_state["classify_key"] = key
    st.session_state[VIEWS_KEY] = {}
preds = st.session_state["classify_preds"]
raw = dict(items)
del items

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

def matching_views(name: str) -> tuple | str:
    """Thumbnails of the original and the survey-matched picture (drawn once per result, kept
    in the session), or why they cannot be shown."""
    views = st.session_state.setdefault(VIEWS_KEY, {})
    if name not in views:
        try:
            original = read_image(raw[name]).image
            matched, _ = prepare_for_model(original, survey)
            size = framed_items[name].original_size if name in framed_items else original.size
            views[name] = (thumbnail(original), thumbnail(matched), size)
        except Exception as exc:  # display only; the prediction above already succeeded
            views[name] = f"Cannot show the matching steps: {one_line(exc)}"
    return views[name]


if pred.survey_matched and shown in raw:
    with st.expander("Survey matching: original and as given to the model", expanded=False):
        view = matching_views(shown)
        if isinstance(view, str):
            st.warning(view)
        else:
            original, matched, (width, height) = view
            a, b = st.columns(2)
            a.image(original, caption=f"Original ({width}×{height})")
            b.image(matched, caption="Re-framed, blurred and given SDSS sky noise")

if len(preds) == 1:
    single = pd.DataFrame([p.row() for p in preds])
    st.download_button("Download result (CSV)", single.to_csv(index=False).encode(),
                       file_name="galaxy_prediction.csv", mime="text/csv",
                       icon=":material/download:")

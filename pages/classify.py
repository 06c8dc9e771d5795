"""Classify: upload galaxy images (or pick examples) and see class, calibrated probability and
Grad-CAM for each; where a picture holds several galaxies, or its galaxy is off-centre or cut by
the frame, point at the one meant (dashboard.pointing)."""

from dashboard.ui import require_app

require_app()  # first: a page opened on its own reroutes through app.py before any heavy
#                 import (torch, through dashboard.models: ~4 s on a server's first visit)

import copy
import io
from pathlib import Path

import pandas as pd
import streamlit as st
from PIL import Image
from streamlit_image_coordinates import streamlit_image_coordinates

from dashboard import memory, models, paths, pointing, serving, uploads
from dashboard.charts import probability_figure
from dashboard.explain import cam_caption, cam_overlay
from dashboard.ui import one_line, thumbnail, upscale
from dashboard.verdict import (
    Verdict,
    csv_bytes,
    csv_row,
    guess_line,
    percent_pair,
    unfamiliar_advice,
    verdict,
)
from galaxy_core.data.box import Box, BoxError, crop_to_box, parse_box, upright_size
from galaxy_core.data.imageio import GZIP_SUFFIX, IMAGE_SUFFIXES, read_image
from galaxy_core.errors import GalaxyError
from galaxy_core.evaluate.report import validation_threshold
from galaxy_core.locations import default_data_root
from galaxy_core.model.ood import WARN_AT
from galaxy_core.model.prior import training_prior
from galaxy_core.predict.classify import Prediction
from galaxy_core.predict.inputs import ESCAPED_NOTE
from galaxy_core.predict.population import MIN_FOR_ESTIMATE, PriorUsed, apply_prior
from galaxy_core.predict.survey_match import prepare_for_model

UPLOAD_TYPES = [suffix.lstrip(".") for suffix in (*IMAGE_SUFFIXES, GZIP_SUFFIX)]
SURVEY_HELP = ("The network learned from SDSS cutouts. **auto** rescales only images that do not "
               "look like one (e.g. Hubble or amateur images: re-framed, blurred and given SDSS "
               "sky noise); **on** always does; **off** never does.")

ACCEPT_AT = 0.95
# The spiral-fraction control's choices: 50% (each image alone), the training mix, a number,
# the batch's own estimate.
ALONE, TRAIN, NUMBER, ESTIMATE = "alone", "train", "number", "estimate"
ALONE_FRACTION = 0.5
# Session keys (bare strings would be drawn on the page by Streamlit's magic, hence comments):
FRAMED_KEY = "framed_uploads"  # file id -> uploads.FramedUpload, large uploads already decoded
UPLOADER_KEY = "classify_uploads"  # the file uploader's value
VIEWS_KEY = "classify_views"  # survey-matching thumbnails drawn for the current results
PRIOR_KEY = "classify_prior"  # the spiral-fraction control's choice
ADJUSTED_KEY = "classify_adjusted"  # (results key, prior) -> predictions moved to that prior
UNUSUAL_ROW = "background-color: rgba(247, 118, 142, 0.22)"  # a flagged input's batch row
REGIONS_KEY = "classify_regions"  # (name, digest) -> box chosen ("x0,y0,x1,y1"; "" = whole)
POINTING_KEY = "classify_pointing"  # (name, digest) -> pointing.Pointing, or why there is none


@st.cache_data(show_spinner=False)
def accept_threshold(model_path: str, version: float | None) -> float | None:
    """The validation confidence threshold for ACCEPT_AT accuracy; None when the model has no
    validation report or never reaches it (the page then simply says nothing about it).
    ``version`` (the report's stamp) keys the cache, so a re-evaluated model is not served stale."""
    try:
        return validation_threshold(Path(model_path), ACCEPT_AT)
    except GalaxyError:
        return None


def prior_label(choice: str, train: float | None) -> str:
    return {ALONE: "50%: judge each image alone",
            TRAIN: f"{train:.0%}: the training mix" if train else "The training mix",
            NUMBER: "Another fraction…",
            ESTIMATE: "Estimate it from this batch"}[choice]


def prior_used_text(used: PriorUsed, choice: str) -> str:
    """Which spiral fraction the probabilities on screen are for, in words."""
    if used.fraction != used.fraction:  # NaN: a model that does not record its mix
        return "Probabilities for the training mix (this model does not record it)"
    why = {ALONE: "each image judged alone", TRAIN: "the training mix",
           NUMBER: "the fraction you gave", ESTIMATE: "estimated from this batch"}.get(choice, "")
    return f"Probabilities for a population of {used.fraction:.0%} spirals ({why})"


st.title("Classify a galaxy")
st.caption("Upload images from any telescope (JPEG, PNG, TIFF, FITS) or try the examples. "
           "Each gets a class, a calibrated probability and a Grad-CAM map of what drove it.")

choice, loaded = models.current_loaded()
train_fraction = training_prior(loaded.meta)

left, middle, right = st.columns([1.1, 1, 1.4])
source = left.radio("Images from", ["Upload", "Examples"], horizontal=True,
                    label_visibility="collapsed")
survey = middle.segmented_control("Survey matching", ["auto", "on", "off"], default="auto",
                                  help=SURVEY_HELP) or "auto"
prior_box = right.container()  # filled once the number of images is known


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
                                  f"over {uploads.LARGE_UPLOAD_BYTES // 10**6} MB (as files or once "
                                  "decoded) are read one at a time on this server.") or []
    files = [f for f in files if hasattr(f, "getvalue")]  # not a file deleted meanwhile
    framed = st.session_state.setdefault(FRAMED_KEY, {})
    for gone in set(framed) - {f.file_id for f in files}:
        del framed[gone]  # removed from the widget
    large = [f for f in files if f.file_id not in framed and uploads.is_large(f.getvalue())]
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
                                     "unlabelled Galaxy Zoo 2 cutouts for batch prediction. "
                                     "Known labels are shown after the prediction.")
        lookup = {e[0]: e[1] for e in examples}
        known = {e[0]: e[2] for e in examples if e[2]}
        items = [(n, lookup[n].read_bytes()) for n in picked]

with prior_box:
    options = [ALONE, TRAIN, NUMBER] + ([ESTIMATE] if len(items) >= MIN_FOR_ESTIMATE else [])
    if st.session_state.get(PRIOR_KEY) not in options:
        st.session_state[PRIOR_KEY] = ALONE
    prior_choice = st.selectbox(
        "Expected spiral fraction of your images", options, key=PRIOR_KEY,
        format_func=lambda c: prior_label(c, train_fraction),
        help="Bayes' rule moves every probability to the share of spirals you expect among "
             "your images. 'Estimate it from this batch' (from "
             f"{MIN_FOR_ESTIMATE} images) fits the share to the batch itself.")
    given = ALONE_FRACTION
    if prior_choice == NUMBER:
        given = st.number_input("Spiral fraction (%)", 1, 99, 50, 1, key="classify_prior_pct",
                                help="The share of spirals you expect among these images.") / 100
    st.caption(f"50%: the answer reflects the image alone. The training mix"
               f"{f' ({train_fraction:.0%} spirals)' if train_fraction else ''} is an artefact "
               "of how the Galaxy Zoo training sets were assembled.")

if not items:
    st.info("Add one or more images to classify them.")
    st.stop()


def digest(name: str, data: bytes) -> str:
    framed_copy = framed_items.get(name)
    return framed_copy.digest or framed_copy.error if framed_copy else serving.digest(data)


regions: dict[tuple[str, str], str] = st.session_state.setdefault(REGIONS_KEY, {})


def region_of(name: str, data: bytes) -> str:
    """The box chosen for this upload ("x0,y0,x1,y1" in the file's full-resolution pixels), or
    "" for the whole picture."""
    return regions.get((name, digest(name, data)), "")


def box_to_classify(name: str, data: bytes) -> Box | None:
    """The chosen box in pixels of what is classified: the file itself, or for a large upload
    its framed copy, averaged down (the box is scaled to it)."""
    text = region_of(name, data)
    if not text:
        return None
    box = parse_box(text)
    framed_copy = framed_items.get(name)
    if framed_copy is not None and framed_copy.png:
        size = Image.open(io.BytesIO(framed_copy.png)).size  # the header only
        box = box.scaled(upright_size(framed_copy.original_size, size), size)
    return box


def classify(items: list[tuple[str, bytes]]) -> list[Prediction]:
    """Predictions in upload order, each for the region chosen for it (the whole picture
    unless a box was); a large upload is classified from its framed copy and keeps the
    loader's notes on the original file (or its one-line error)."""
    readable = [(n, b) for n, b in items if not (n in framed_items and framed_items[n].error)]
    bar = st.progress(0.0, text=f"Classifying {len(items)} image(s)…")

    def progress(done: int, total: int) -> None:
        bar.progress(done / max(total, 1), text=f"Classified {done} of {total}")

    done = iter(serving.classify_uploads(loaded, readable, survey, progress,
                                         [box_to_classify(n, b) for n, b in readable]))
    bar.empty()
    preds = []
    for name, data in items:
        copy_ = framed_items.get(name)
        if copy_ is not None and copy_.error:
            preds.append(Prediction(source=name, error=copy_.error))
            continue
        pred = next(done)
        pred.box = region_of(name, data)  # the full-resolution box, also for a framed copy
        if copy_ is not None:
            pred.notes = [n for n in pred.notes if n == ESCAPED_NOTE] + copy_.notes
        preds.append(pred)
    return preds


def with_prior(preds: list[Prediction], wanted: str | float) -> tuple[list[Prediction], PriorUsed,
                                                                        str]:
    """Copies of ``preds`` moved to the spiral fraction ``wanted`` (as ``galaxy predict
    --prior``), the prior used, and why it is not the one asked for ("" when it is)."""
    adjusted = [copy.copy(p) for p in preds]
    if train_fraction is None:
        return adjusted, apply_prior(adjusted, loaded.meta, TRAIN), (
            "" if wanted == TRAIN else "This model does not record its training mix, so its "
            "probabilities cannot be moved to another spiral fraction; they are shown as "
            "calibrated.")
    try:
        return adjusted, apply_prior(adjusted, loaded.meta, wanted), ""
    except GalaxyError as exc:  # too few usable galaxies for an estimate
        adjusted = [copy.copy(p) for p in preds]
        return adjusted, apply_prior(adjusted, loaded.meta, ALONE_FRACTION), (
            f"{one_line(exc).split('. Give')[0]}: using 50% instead.")


key = (models.model_key(loaded), survey,
       tuple((n, digest(n, b), region_of(n, b)) for n, b in items))
if st.session_state.get("classify_key") != key:
    st.session_state["classify_preds"] = classify(items)
    st.session_state["classify_key"] = key
    st.session_state[VIEWS_KEY] = {}
wanted = {ALONE: ALONE_FRACTION, TRAIN: TRAIN, NUMBER: given, ESTIMATE: ESTIMATE}[prior_choice]
adjusted_key = (key, wanted)
if st.session_state.get(ADJUSTED_KEY, (None,))[0] != adjusted_key:
    st.session_state[ADJUSTED_KEY] = (adjusted_key,
                                      *with_prior(st.session_state["classify_preds"], wanted))
_, preds, prior_used, prior_problem = st.session_state[ADJUSTED_KEY]
raw = dict(items)
del items

threshold = accept_threshold(str(loaded.path), models.report_version(Path(loaded.path), "val"))
with prior_box:
    if prior_problem:
        st.warning(prior_problem, icon=":material/info:")
    if prior_used.estimate is not None:
        est = prior_used.estimate
        st.metric("Estimated spiral fraction of this batch", f"{est.fraction:.0%}",
                  f"95% interval {est.low:.0%} to {est.high:.0%}, {est.n} galaxies",
                  delta_color="off", delta_arrow="off",
                  help="Expectation-maximisation over the batch's probabilities (Saerens et "
                       "al. 2002), with a bootstrap interval; inputs unlike the training "
                       "galaxies are left out. Counting the answers would say "
                       f"{est.classify_and_count:.0%}, biased towards the training mix.")

failed = [p for p in preds if not p.ok]


def forget_box(name: str) -> None:
    """Back to the whole picture for an upload whose chosen box could not be classified."""
    for rid in [rid for rid in regions if rid[0] == name]:
        regions[rid] = ""


for n, p in enumerate(failed[:10]):
    st.error(f"{p.source} could not be classified: {one_line(p.error)}")
    if p.box:
        st.button("Classify the whole picture instead", key=f"unbox_{n}",
                  on_click=forget_box, args=(p.source,))
if len(failed) > 10:
    st.error(f"…and {len(failed) - 10} more files could not be classified (see the CSV).")
ok = [p for p in preds if p.ok]


def csv_table(preds: list[Prediction]) -> pd.DataFrame:
    """The rows of ``galaxy predict --prior ... --accept-at 0.95``, plus ``unusual``."""
    return pd.DataFrame([csv_row(p, prior_used.fraction, threshold) for p in preds])


def confidence(p: Prediction) -> float:
    return max(p.p_spiral, p.p_elliptical)


def verdict_of(p: Prediction) -> Verdict:
    """The answer in words; ``Prediction.unusual`` (the out-of-distribution score, which
    includes the check of the picture as given, above 1) overrides the band."""
    return verdict(p.label, confidence(p), p.unusual, p.may_be_galaxy)


if len(preds) > 1:
    st.subheader(f"Batch: {len(ok)} classified, {len(failed)} failed")
    table = csv_table(preds)
    view = table.copy()
    view.insert(1, "answer", [verdict_of(p).short if p.ok else "" for p in preds])
    if known:
        view.insert(2, "example label", [known.get(p.source, "") for p in preds])
    for col in ("p_spiral", "ood_score", "prior"):
        view[col] = pd.to_numeric(view[col], errors="coerce")
    view["survey_matched"] = view["survey_matched"].map({1: "yes", 0: "no"}).fillna("")
    if "accepted" in view:
        view["accepted"] = view["accepted"].map({1: "yes", 0: "no"}).fillna("")
    # a flagged row says which kind of unusual, in the words of the single-picture verdict
    view["unusual"] = [(p.ood_verdict or "no") if p.ok else "" for p in preds]
    order = ["path", "answer", *(["example label"] if known else []), "p_spiral",
             *(["accepted"] if threshold is not None else []), "unusual",
             *(["ood_findings"] if view["ood_findings"].astype(bool).any() else []),
             "ood_score", "prior", "survey_matched",
             *[c for c in ("box", "error", "notes") if view[c].astype(bool).any()]]
    view = view[order]  # label and p_elliptical (in the CSV) repeat answer and p_spiral
    flagged = pd.Series([p.unusual for p in preds], index=view.index)
    styled = view.style.apply(lambda row: [UNUSUAL_ROW if flagged[row.name] else ""] * len(row),
                              axis=1)
    st.dataframe(styled, hide_index=True, column_config={
        "path": st.column_config.TextColumn("Image"),
        "answer": st.column_config.TextColumn("Answer", help="Confident at p ≥ 0.9, probably "
                                              "at 0.7-0.9, unsure below 0.7."),
        "p_spiral": st.column_config.ProgressColumn("P(spiral)", format="%.3f", min_value=0,
                                                    max_value=1),
        "accepted": st.column_config.TextColumn(
            "Accepted", help=f"Clears the threshold at which validation answers were "
                             f"{ACCEPT_AT:.0%} accurate (p ≥ {threshold or 0:.3f}), and the "
                             "input is not unusual."),
        "unusual": st.column_config.TextColumn(
            "Unusual", help="Unlike the training galaxies (highlighted): do not trust the "
                            "label. 'may be a galaxy': framed unlike a survey cutout (filling "
                            "the frame, off centre); 'not like a galaxy': anything else."),
        "ood_findings": st.column_config.TextColumn(
            "Why", help="The checks a flagged picture failed (the single-picture view says "
                        "what to do about each)."),
        "ood_score": st.column_config.NumberColumn("OOD score", format="%.2f",
                                                   help="Above 1: unlike the training galaxies"),
        "prior": st.column_config.NumberColumn("Prior", format="%.2f",
                                               help="The spiral fraction the probabilities "
                                                    "are for."),
        "survey_matched": st.column_config.TextColumn("Survey-matched"),
        "box": st.column_config.TextColumn(
            "Box", help="The region classified (x0,y0,x1,y1 in the file's pixels), when one "
                        "was chosen; empty: the whole picture.")})
    st.caption(prior_used_text(prior_used, prior_choice) + ". Highlighted rows look unlike the "
               "training galaxies.")
    st.download_button("Download results (CSV)", csv_bytes(table.to_dict("records")),
                       file_name="galaxy_predictions.csv", mime="text/csv",
                       icon=":material/download:")

if not ok:
    st.stop()
names = [p.source for p in ok]
shown = st.selectbox("Show details for", names) if len(ok) > 1 else names[0]
pred = ok[names.index(shown)]
sure = confidence(pred)
answer = verdict_of(pred)

with st.container(key="verdict"):  # first, above the pictures: on a phone they fill a screen
    st.markdown(answer.markdown(), anchors=False)
    name = "`" + one_line(shown, 80).replace("`", "'") + "`"  # code: no Markdown inside
    if pred.may_be_galaxy:
        st.markdown(unfamiliar_advice(pred.findings, matched=pred.survey_matched))
    if pred.unusual:
        st.caption(f"{name}: {guess_line(pred.label, sure)}")
    else:
        spiral, elliptical = percent_pair(pred.p_spiral)
        st.caption(f"{name} · P(spiral) {spiral} · P(elliptical) {elliptical} · "
                   f"{prior_used_text(prior_used, prior_choice)}.")
    if known.get(shown):
        agree = "agrees" if known[shown] == pred.label else "disagrees"
        st.caption(f"The example set labels it **{known[shown]}**: the model {agree}.")


def pointing_of(name: str) -> pointing.Pointing | str:
    """The candidates of one picture (found once per upload, kept in the session), or why
    they cannot be shown."""
    found = st.session_state.setdefault(POINTING_KEY, {})
    rid = (name, digest(name, raw[name]))
    if rid not in found:
        try:
            picture = read_image(raw[name])
            framed_copy = framed_items.get(name)
            original = framed_copy.original_size if framed_copy else picture.original_size
            found.clear()  # one picture's at a time: they hold a copy of it
            found[rid] = pointing.Pointing.of(picture.image,
                                              upright_size(original, picture.image.size))
        except Exception as exc:  # display only; the answer above already succeeded
            found[rid] = f"Cannot look for other galaxies: {one_line(exc)}"
    return found[rid]


def choose_region(name: str, where: pointing.Pointing) -> None:
    """'Which galaxy?': the picture with its candidates outlined; a click picks one, a drag
    draws a box; the radio and the text field do the same from the keyboard. Every change
    lands in REGIONS_KEY from a callback, so the run it starts classifies the new region."""
    rid = (name, digest(name, raw[name]))
    tag = serving.digest(f"{name}\0{rid[1]}".encode())[:12]
    keys = {k: f"region_{k}_{tag}" for k in ("click", "choice", "typed", "custom", "problem")}
    custom = st.session_state.get(keys["custom"], "")
    current = regions.get(rid, "")
    if current and current != custom and current not in [
            where.candidate_box(n).text for n in range(1, len(where.candidates) + 1)]:
        custom = st.session_state[keys["custom"]] = current
    choices = pointing.options(where, custom)
    chosen = next((o for o in choices if pointing.choice_box(o, where, custom) == current),
                  pointing.AUTO)
    st.session_state[keys["choice"]] = chosen

    def choose(option: str, box_text: str) -> None:
        if option == pointing.BOX:
            st.session_state[keys["custom"]] = box_text
        regions[rid] = box_text
        st.session_state[keys["problem"]] = ""

    def on_pick() -> None:
        option, box = where.region_at(st.session_state.get(keys["click"]))
        if option:
            choose(option, box.text if box else "")

    def on_choice() -> None:
        option = st.session_state[keys["choice"]]
        choose(option, pointing.choice_box(option, where,
                                           st.session_state.get(keys["custom"], "")))

    def on_typed() -> None:
        text = st.session_state[keys["typed"]].strip()
        if not text:
            return
        try:
            choose(pointing.BOX, pointing.typed_box(text, where).text)
        except BoxError as exc:
            st.session_state[keys["problem"]] = one_line(exc)

    with st.container(key="pointing", border=True):
        st.markdown("**Which galaxy?**")
        why = where.reasons or ["a region was chosen"]
        st.caption(f"Asked because {', '.join(why[:-1]) + ' and ' if len(why) > 1 else ''}"
                   f"{why[-1]}. The answer above is for the region "
                   "outlined in yellow (the whole picture when none is). Click a numbered "
                   "galaxy, or drag a box around the one you mean.")
        left, right = st.columns([1.6, 1])
        with left:
            box = parse_box(current) if current else None
            # "stretch": the column's width. The component's "content" does not shrink a
            # picture wider than the column (its CSS has no max-width): the right part was
            # hidden under a scroll bar, at desktop width and more so on a phone.
            streamlit_image_coordinates(where.shown(box), key=keys["click"],
                                        click_and_drag=True, on_click=on_pick,
                                        width="stretch", cursor="crosshair")
        with right:
            st.radio("Classify", choices, key=keys["choice"], on_change=on_choice,
                     format_func=lambda o: pointing.option_label(o, where, custom))
            st.text_input("Or type a box", key=keys["typed"], on_change=on_typed,
                          placeholder="x0,y0,x1,y1",
                          help="Left, top, right, bottom in pixels of the file, from its "
                               "top-left corner (what galaxy predict --box takes). "
                               f"This picture is {where.full_size[0]}×{where.full_size[1]}.")
            if st.session_state.get(keys["problem"]):
                st.warning(st.session_state[keys["problem"]], icon=":material/crop_free:")


where = pointing_of(shown)
if isinstance(where, pointing.Pointing) and (where.reasons or pred.box):
    choose_region(shown, where)

cfg = loaded.config
c1, c2, c3 = st.columns([1, 1, 1.2])
c1.image(upscale(pred.model_input), alt="Model input",
         caption=(f"Your box {pred.box}, as" if pred.box else "As") + " the model sees it: "
                 f"centre {cfg.crop_fraction:.0%} crop, resized to {cfg.image_size} px"
                 + (", survey-matched" if pred.survey_matched else ""))
with c2:
    cam_slot = st.empty()
    explain = st.segmented_control(
        "Grad-CAM explains", list(loaded.classes), default=pred.label,
        key=f"explain_{shown}_{pred.box}",  # per region: a new galaxy's map explains its answer
        help="Which class the heat map explains: by default the predicted one.") or pred.label
    with st.spinner("Computing Grad-CAM…"):
        cam = cam_overlay(loaded, models.model_key(loaded), pred.model_input,
                          loaded.classes.index(explain))
    cam_slot.image(upscale(cam), alt="Grad-CAM overlay", caption=cam_caption(loaded, explain))
with c3:
    if pred.unusual:
        score = (f" (OOD score {pred.ood_score:.2f}, above {WARN_AT:g})"
                 if pred.ood_score is not None else "")
        st.warning(f"Unusual input{score}: it looks unlike the SDSS galaxy cutouts the network "
                   "learned from, so its label means little; it is never accepted without a "
                   "human look.", icon=":material/block:")
    else:
        st.plotly_chart(probability_figure({"spiral": pred.p_spiral,
                                            "elliptical": pred.p_elliptical}), key="probs")
    st.caption(f"Probabilities after prior correction and temperature scaling "
               f"(T = {loaded.temperature:.2f}), averaged over 8 rotations and flips.")
    if not pred.unusual:
        if pred.ood_score is not None:
            st.caption(f"OOD score {pred.ood_score:.2f} (1 or below: like the training "
                       "galaxies).")
        if threshold is not None:
            taken = pred.accepted(threshold)
            st.caption((":material/check: Accepted" if taken else ":material/help: Not accepted")
                       + f" at the {ACCEPT_AT:.0%} level: on validation, answers with p ≥ "
                       f"{threshold:.3f} were {ACCEPT_AT:.0%} accurate"
                       + ("." if taken else "; this one is worth a human look."))
    for note in pred.notes:
        st.caption(f"Loader: {note}")


def matching_views(name: str) -> tuple | str:
    """Thumbnails of the original and the survey-matched picture (drawn once per result, kept
    in the session), or why they cannot be shown."""
    views = st.session_state.setdefault(VIEWS_KEY, {})
    if name not in views:
        try:
            original = read_image(raw[name]).image
            size = framed_items[name].original_size if name in framed_items else original.size
            box = box_to_classify(name, raw[name])
            if box is not None:  # the region classified, not the whole picture
                original = crop_to_box(original, box)
                full = parse_box(region_of(name, raw[name]))
                size = (full.width, full.height)
            matched, _ = prepare_for_model(original, survey)
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
    st.download_button("Download result (CSV)", csv_bytes(csv_table(preds).to_dict("records")),
                       file_name="galaxy_prediction.csv", mime="text/csv",
                       icon=":material/download:")

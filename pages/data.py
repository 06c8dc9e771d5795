"""Data: how the Galaxy Zoo catalogue became the training set, and what the galaxies look like."""

from dashboard.ui import require_app

require_app()  # first: a page opened on its own reroutes through app.py before any heavy
#                 import (torch, through dashboard.models: ~4 s on a server's first visit)

import numpy as np
import streamlit as st

from dashboard import paths
from dashboard.charts import funnel_figure, subclass_figure
from dashboard.ui import one_line
from galaxy_core.config import Config
from galaxy_core.data.imageio import load_image
from galaxy_core.data.prepared import open_prepared
from galaxy_core.data.preprocess import frame_for_model
from galaxy_core.errors import GalaxyError
from galaxy_core.locations import default_data_root, prepared_dir

st.title("The data")
folder = prepared_dir()

try:
    prepared = open_prepared(folder)
except GalaxyError as exc:
    st.warning(one_line(exc))
    raw_ok = paths.gz1_labels().is_file() and paths.gz1_images().is_dir()
    if raw_ok:
        st.caption(f"The Galaxy Zoo 1 data is in {paths.show(default_data_root())}: prepare it "
                   f"here (checks every image and builds the training cache; a few minutes).")
        if st.button("Prepare the dataset now", type="primary", icon=":material/play_arrow:"):
            from galaxy_core.data.prepare import PrepareRequest, Source, prepare

            check = st.progress(0.0, text="Checking images…")
            cache = st.progress(0.0, text="Building the cache…")
            request = PrepareRequest(images=None, out=folder, n_splits=3, sources=(
                Source("gz1", paths.gz1_labels(), paths.gz1_images()),))
            prepare(request, Config(),
                    progress=lambda d, t: check.progress(d / max(t, 1),
                                                         text=f"Checked {d} of {t} images"),
                    cache_progress=lambda d, t: cache.progress(d / max(t, 1),
                                                               text=f"Cached {d} of {t} images"))
            st.rerun()
    else:
        st.info(f"No Galaxy Zoo data at {paths.show(default_data_root())}. "
                + paths.set_data_hint())
    st.markdown("To reproduce the dataset from the command line:")
    st.code(paths.prepare_command(folder), language="bash")
    st.stop()

summary = prepared.summary
kept = summary.get("kept_per_class", {})
st.caption(f"Prepared folder {paths.show(folder)}; labels from {summary.get('source', '?')}.")

cols = st.columns(2 + len(kept))
cols[0].metric("Catalogue rows", f"{summary['rows_read']:,}")
cols[1].metric("Dropped", f"{summary.get('dropped_total', 0):,}",
               help=", ".join(f"{k}: {v}" for k, v in summary.get("dropped", {}).items()))
for col, (name, count) in zip(cols[2:], kept.items()):
    col.metric(f"Kept {name}", f"{count:,}")

st.subheader("From catalogue to training set")
st.plotly_chart(funnel_figure(summary), key="funnel")
st.caption("Uncertain galaxies (Galaxy Zoo's 'don't know' and mergers, or votes below the "
           "threshold) are dropped, then galaxies whose image is missing or unreadable. The kept "
           "classes are imbalanced, which training corrects with class weights.")
if summary.get("split_counts"):
    with st.expander(f"Train / validation / test sizes ({prepared.n_splits} splits)"):
        st.dataframe(summary["split_counts"])

per_source = summary.get("kept_per_source") or {}
if per_source:
    st.subheader("Galaxies per survey and sub-class")
    labels = prepared.table.drop_duplicates(["source", "subclass"]).set_index(
        ["source", "subclass"])["label"]
    rows = [{"source": source, "subclass": sub, "label": labels.get((source, sub), "?"),
             "count": count}
            for source, part in per_source.items()
            for sub, count in part.get("per_subclass", {}).items()]
    st.plotly_chart(subclass_figure(rows), key="subclasses")
    st.caption(" · ".join(f"**{name}**: {part['kept']:,} kept of {part['rows_read']:,}"
                          for name, part in per_source.items())
               + ". Each split draws every survey's spirals and ellipticals in the same "
                 "proportions, so the test set holds each survey as training does.")
twins = summary.get("duplicates") or []
if twins:
    differ = [t for t in twins if t["kept_label"] != t["dropped_label"]]
    with st.expander(f"The same galaxy twice: {len(twins)} copies dropped "
                     f"({len(differ)} with labels that disagree)"):
        st.caption("These galaxies are in two surveys' sets under different ids. They were "
                   "found by what the image shows (the files differ byte for byte), and each "
                   "is kept once, so no galaxy is in training and again in the test set.")
        st.dataframe(twins, hide_index=True)

st.subheader("Sample galaxies")
missing = prepared.image_roots.missing()
if len(missing) == len(prepared.image_roots.folders):
    st.warning(f"The images are not at {', '.join(missing)}. " + paths.set_data_hint())
else:
    if missing:
        st.caption(f"Not on this machine: {', '.join(missing)}; samples come from the rest.")
    c1, c2, c3 = st.columns([1, 1, 2])
    per_class = c1.slider("Per class", 3, 12, 6)
    crop = c2.toggle("As the model sees it", value=False,
                     help="Show the centre crop and resize used for training.")
    if c3.button("Other galaxies", icon=":material/shuffle:"):
        st.session_state["data_seed"] = st.session_state.get("data_seed", 0) + 1
    rng = np.random.default_rng(st.session_state.get("data_seed", 0))
    cfg = Config()
    for name in kept:
        pool = prepared.table[prepared.table["label"] == name]
        if missing:
            roots = prepared.image_roots
            pool = pool[pool["image"].map(lambda n: (path := roots.resolve(n)) is not None
                                          and path.is_file())]
        if pool.empty:
            continue
        picked = pool.iloc[rng.choice(len(pool), min(per_class, len(pool)), replace=False)]
        images, captions = [], []
        for _, row in picked.iterrows():
            try:
                img = load_image(prepared.image_path(row["image"]))
            except GalaxyError as exc:
                st.caption(one_line(exc))
                continue
            images.append(frame_for_model(img, cfg) if crop else img.resize((160, 160)))
            captions.append(str(row["objid"]))
        st.markdown(f"**{name.capitalize()}** ({len(pool):,} galaxies)")
        if images:
            st.image(images, caption=captions, width=150)

st.subheader("Reproduce it")
st.code(paths.prepare_command(folder, prepared.n_splits or 1), language="bash")

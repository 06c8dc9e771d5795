"""Galaxy morphology dashboard: ``streamlit run app.py`` (or ``make run``).

A thin shell over ``galaxy_core``: the pages under ``pages/`` only call the library and draw what
it returns. Locations come from GALAXY_MODEL_DIR, GALAXY_RUNS_DIR, GALAXY_DATA and
GALAXY_PREPARED (see ``galaxy_core/locations.py``).

The first lines draw before anything heavy is imported: on the first visit after a server start,
Streamlit shows its old folder-based page list ("app, classify, data, ...") until this script
calls ``st.navigation``, and importing torch (through ``dashboard.models``) takes about 4 s. So
the navigation comes first (``dashboard.ui`` imports no torch), then the sidebar title and a
line saying what is loading, and only then the network library.
"""

import sys

import streamlit as st

from dashboard.ui import app_pages, guard, inside_app

st.set_page_config(page_title="Galaxy morphology", page_icon=":material/flare:", layout="wide")

page = st.navigation(app_pages())

with st.sidebar:
    st.markdown("### :material/flare: Spiral or elliptical?")

starting = st.empty()
if "torch" not in sys.modules:  # first page run of this server process
    starting.info("Starting the dashboard: loading the network library (a few seconds, "
                  "once per server start)…", icon=":material/hourglass_top:")

from dashboard import memory, models, paths  # noqa: E402  (torch: after the first drawing)
from galaxy_core.locations import default_data_root  # noqa: E402

starting.empty()
with guard("Model selector"):
    models.sidebar_selector()
with st.sidebar:
    data_ok = paths.gz1_images().is_dir()
    st.caption(f"Data: {paths.show(default_data_root())}"
               + ("" if data_ok else " (not found; set GALAXY_DATA)"))

try:
    with guard(), inside_app():
        page.run()
finally:  # also after st.stop() and st.rerun()
    memory.give_back()

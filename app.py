"""Galaxy morphology dashboard: ``streamlit run app.py`` (or ``make run``).

A thin shell over ``galaxy_core``: the pages under ``pages/`` only call the library and draw what
it returns. Locations come from GALAXY_MODEL_DIR, GALAXY_RUNS_DIR, GALAXY_DATA and
GALAXY_PREPARED (see ``galaxy_core/locations.py``).
"""

import streamlit as st

from dashboard import access, memory, models, paths
from dashboard.ui import app_pages, guard, inside_app
from galaxy_core.locations import default_data_root

st.set_page_config(page_title="Galaxy morphology", page_icon=":material/flare:", layout="wide")

page = st.navigation(app_pages())

with st.sidebar:
    st.markdown("### :material/flare: Spiral or elliptical?")
with guard("Model selector"):
    models.sidebar_selector()
if access.is_local():  # a visitor on another computer has no use for the server's folders
    with st.sidebar:
        data_ok = paths.gz1_images().is_dir()
        st.caption(f"Data: {paths.show(default_data_root())}"
                   + ("" if data_ok else " (not found; set GALAXY_DATA)"))

try:
    with guard(), inside_app():
        page.run()
finally:  # also after st.stop() and st.rerun()
    memory.give_back()

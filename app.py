"""Galaxy morphology dashboard: ``streamlit run app.py`` (or ``make run``).

A thin shell over ``galaxy_core``: the pages under ``pages/`` only call the library and draw what
it returns. Locations come from GALAXY_MODEL_DIR, GALAXY_RUNS_DIR, GALAXY_DATA and
GALAXY_PREPARED (see ``dashboard/paths.py``).
"""

import streamlit as st

from dashboard import models, paths
from dashboard.ui import guard, inside_app

st.set_page_config(page_title="Galaxy morphology", page_icon=":material/flare:", layout="wide")

PAGES = [
    st.Page("pages/classify.py", title="Classify", icon=":material/image_search:", default=True),
    st.Page("pages/evaluate.py", title="Evaluate", icon=":material/analytics:"),
    st.Page("pages/failures.py", title="Failures", icon=":material/report:"),
    st.Page("pages/train.py", title="Train", icon=":material/model_training:"),
    st.Page("pages/data.py", title="Data", icon=":material/dataset:"),
]

page = st.navigation(PAGES)

with st.sidebar:
    st.markdown("### :material/flare: Spiral or elliptical?")
with guard("Model selector"):
    models.sidebar_selector()
with st.sidebar:
    data_ok = paths.gz1_images().is_dir()
    st.caption(f"Data: {paths.show(paths.data_root())}"
               + ("" if data_ok else " (not found; set GALAXY_DATA)"))

with guard(), inside_app():
    page.run()

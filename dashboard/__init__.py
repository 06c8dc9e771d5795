"""Shared UI helpers for the Streamlit dashboard (``app.py`` and ``pages/``).

Everything here is presentation glue: where models, runs and data live (``paths``), which model
the sidebar selected and its caches (``models``), one-line error display and image helpers
(``ui``) and starting/stopping ``galaxy train`` processes (``training``). All science lives in
``galaxy_core``; this package may import streamlit, ``galaxy_core`` never does.
"""

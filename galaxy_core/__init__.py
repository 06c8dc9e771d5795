"""galaxy_core: Galaxy Zoo catalogues and SDSS cutouts in, a trained, evaluated and explainable
spiral/elliptical classifier out. The library behind the ``galaxy`` CLI and the dashboard; it
never imports Streamlit.

Layout follows the pipeline: data -> model -> train -> evaluate -> explain -> predict.
"""

__version__ = "0.1.0"

"""train stage of the pipeline."""

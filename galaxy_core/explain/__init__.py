"""explain stage of the pipeline."""

"""predict stage of the pipeline."""

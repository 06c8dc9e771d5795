"""release stage: turn trained weights into the model folder users get (calibration, reports, OOD reference, model card)."""

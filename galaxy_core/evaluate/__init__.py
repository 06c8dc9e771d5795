"""Evaluation: metrics, calibration, saved reports and the figures drawn from them."""

"""calibration stage (see README)."""

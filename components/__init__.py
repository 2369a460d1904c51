"""Custom TFX components of the pipeline."""

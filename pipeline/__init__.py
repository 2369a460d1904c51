"""The TFX pipeline factory and its local runner."""

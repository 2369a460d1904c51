"""Keras model builders, the Transform preprocessing_fn and the Trainer run_fn."""

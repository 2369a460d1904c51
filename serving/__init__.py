"""TF-Serving-compatible serving and clients of the pushed model."""

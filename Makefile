# The README's commands. Everything runs from the repository root in .venv.
SHELL := /bin/bash
PY := .venv/bin/python
DATA ?=
OUTPUT ?= output
MODEL ?= cnn
PRETRAIN ?=
RUN_ARGS ?=

.PHONY: setup test lint typecheck run lock clean

setup:  ## .venv with every pinned dependency (Debian 12 and 13), and MediaPipe's own venv
	bash scripts/setup_venv.sh
	bash scripts/setup_mediapipe_venv.sh

test: setup  ## lint, types, then the whole suite (e2e and slow tests included)
	$(PY) -m ruff check .
	$(PY) -m mypy
	$(PY) -m pytest -v

lint:
	$(PY) -m ruff check .

typecheck:
	$(PY) -m mypy

run: setup  ## the local pipeline end to end
	$(PY) -m pipeline.local_runner $(if $(DATA),--data=$(DATA)) --output_dir=$(OUTPUT) --model=$(MODEL) $(if $(PRETRAIN),--pretrain=$(PRETRAIN)) $(RUN_ARGS)

lock:  ## re-pin requirements.txt from requirements.in (needs no .venv)
	bash scripts/setup_venv.sh --tools-only
	.cache/setup/tools/bin/uv pip compile requirements.in --python-version 3.11 \
		--python-platform x86_64-manylinux_2_39 -o requirements.txt --custom-compile-command "make lock"

clean:  ## removes OUTPUT (default output/) and the test caches
	rm -rf -- "$(OUTPUT)" .pytest_cache

# ---- serving (issue #7) ----
MODEL_NAME ?= imdb_sentiment
GRPC_PORT ?= 8500
REST_PORT ?= 8501

.PHONY: serve deploy-config

serve:  ## TF-Serving-compatible server on the latest run's released model (127.0.0.1)
	$(if $(wildcard $(abspath $(OUTPUT))/serving/$(MODEL_NAME)),,$(error make serve: no \
	released model in $(abspath $(OUTPUT))/serving/$(MODEL_NAME): run 'make run' first, or set OUTPUT))
	$(PY) -m serving.server --model_base_path=$(abspath $(OUTPUT))/serving/$(MODEL_NAME) \
		--model_name=$(MODEL_NAME) --port=$(GRPC_PORT) --rest_api_port=$(REST_PORT) --enable_batching

deploy-config:  ## OUTPUT/deploy/: models.config, batching, monitoring, Compose, K8s, Grafana
	$(PY) -m serving.deploy_config --output_dir=$(OUTPUT)

# ---- kubeflow ----
KFP_OUTPUT ?= imdb-sentiment.yaml
KFP_ARGS ?=
IMAGE ?= $(shell $(PY) -m kubeflow.image)

.PHONY: kubeflow-compile image

kubeflow-compile:  ## KFP v2 package; KFP_ARGS needs --output_dir=gs://... --data=gs://... --image=...
	$(PY) -m kubeflow.runner compile --output=$(KFP_OUTPUT) --image=$(IMAGE) $(KFP_ARGS)

image:  ## the component image (needs Docker): TFX base image of the pinned version + this project
	docker build --build-arg TFX_VERSION=$$($(PY) -m kubeflow.image --tfx) -t $(IMAGE) .

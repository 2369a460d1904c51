#!/usr/bin/env bash
# Creates .cache/mediapipe-venv: MediaPipe's TextClassifier, which the mobile
# benchmark and test run on the shipped .tflite files, in its own environment.
#
# Why not .venv: mediapipe 1.2.3 needs absl-py~=2.3 (tfx pins 1.4.0) and
# opencv-contrib-python 5 with numpy>=2; mediapipe 0.10.21 needs protobuf 4 and
# numpy 1.26 (the project pins protobuf 6.33). Neither can share .venv without
# changing a pinned version. Its wheels are manylinux_2_28, so the plain
# system python3.11 runs them (no glibc shim needed).
#
# Idempotent: a stamp holding the hash of this script makes a second run a no-op.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=${MEDIAPIPE_VENV:-$ROOT/.cache/mediapipe-venv}
PYTHON=${PYTHON:-python3.11}
PINS=(mediapipe==1.2.3 absl-py==2.5.1 numpy==2.4.6 flatbuffers==25.12.19)
STAMP=$VENV/.stamp
HASH=$(sha256sum "${BASH_SOURCE[0]}" | awk '{print $1}')

if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$HASH" ]; then
  echo "[setup-mediapipe] $VENV is up to date" >&2
  exit 0
fi
rm -rf "$VENV"
"$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "${PINS[@]}"
"$VENV/bin/python" -c "from mediapipe.tasks.python import text; text.TextClassifier"
echo "$HASH" > "$STAMP"
echo "[setup-mediapipe] $VENV ready" >&2

"""MediaPipe's TextClassifier on a shipped .tflite, in MediaPipe's own venv.

Runs under `.cache/mediapipe-venv/bin/python` (scripts/setup_mediapipe_venv.sh):
mediapipe cannot share the project's .venv (see that script). Imports only
mediapipe and the standard library. Reads one JSON string per line on stdin,
prints one JSON object per line: the score of the positive label (the only
label) and the seconds the classify call took.

    .cache/mediapipe-venv/bin/python bench/mediapipe_classify.py MODEL.tflite < texts.jsonl
"""

from __future__ import annotations

import json
import sys
import time


def main(argv: list[str]) -> int:
    """Classifies every stdin line with the model named in argv[1]."""
    from mediapipe.tasks.python.core import base_options
    from mediapipe.tasks.python.text import text_classifier

    [model_path] = argv[1:]
    options = text_classifier.TextClassifierOptions(
        base_options=base_options.BaseOptions(model_asset_path=model_path))
    with text_classifier.TextClassifier.create_from_options(options) as classifier:
        for line in sys.stdin:
            review = json.loads(line)
            start = time.perf_counter()
            result = classifier.classify(review)
            seconds = time.perf_counter() - start
            [head] = result.classifications
            scores = {c.category_name: c.score for c in head.categories}
            print(json.dumps({"scores": scores, "seconds": seconds}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

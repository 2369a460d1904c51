"""The component image: its name and the TFX version it is built on.

Every executor of the compiled spec runs in this image. It is the TFX base
image of exactly the TFX version this project pins, plus this project and its
pinned requirements (see the Dockerfile), so the code that runs on the
cluster is the code that compiled the spec, and no wheel travels through the
pipeline root.

    python -m kubeflow.image            # the default image reference
    python -m kubeflow.image --tfx      # the TFX version (the Dockerfile's base tag)
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

__all__ = ["IMAGE_NAME", "TFX_BASE_IMAGE", "TFX_VERSION", "default_image", "main"]

#: Must equal the `tfx[kfp]==` pin in requirements.in (a test checks both and
#: the installed TFX): the base image's TFX is the one that compiled the spec.
TFX_VERSION = "1.21.0"
#: The repository part of the image reference; push it under your registry
#: (`--image=REGISTRY/imdb-sentiment-tfx:TAG`).
IMAGE_NAME = "imdb-sentiment-tfx"
TFX_BASE_IMAGE = f"gcr.io/tfx-oss-public/tfx:{TFX_VERSION}"


def default_image() -> str:
    """`imdb-sentiment-tfx:tfx-1.21.0`: what `make image` tags when no IMAGE is given."""
    return f"{IMAGE_NAME}:tfx-{TFX_VERSION}"


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    print(TFX_VERSION if args == ["--tfx"] else default_image())
    return 0


if __name__ == "__main__":
    sys.exit(main())

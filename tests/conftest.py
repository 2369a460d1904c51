"""Shared fixtures: tiny generated corpora in the official aclImdb layout, and
the real dev archive when IMDB_DATA points at one."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from components.imdb_example_gen.demo_corpus import DemoCorpusSpec, pack_archive, write_demo_corpus

TINY = DemoCorpusSpec(train_per_class=12, test_per_class=6, unsup=8, reviews_per_movie=3)


@pytest.fixture
def tiny_corpus(tmp_path: Path) -> Path:
    """A ~50-review aclImdb/ directory (train pos/neg/unsup, test pos/neg)."""
    return write_demo_corpus(tmp_path / "corpus", TINY)


@pytest.fixture
def tiny_archive(tiny_corpus: Path, tmp_path: Path) -> Path:
    """The same corpus packed like aclImdb_v1.tar.gz."""
    return pack_archive(tiny_corpus, tmp_path / "aclImdb_v1.tar.gz")


@pytest.fixture
def dev_archive() -> Path:
    """The real dataset (IMDB_DATA); tests needing it are skipped without it."""
    value = os.environ.get("IMDB_DATA")
    if not value or not Path(value).exists():
        pytest.skip("IMDB_DATA does not point at the aclImdb dataset")
    return Path(value)


@pytest.fixture
def float64():
    """Keras layers built inside the test compute in float64 (gradient checks)."""
    import keras

    previous = keras.config.floatx()
    keras.config.set_floatx("float64")
    yield
    keras.config.set_floatx(previous)


def pytest_configure(config: pytest.Config) -> None:
    """Split the CPU into 2 logical devices before any test initialises
    TensorFlow, as the local runner does at process start, so MirroredStrategy
    really mirrors in tests."""
    from models.distribution import configure_logical_cpus

    configure_logical_cpus(2)
    # TFX's Beam executors parse sys.argv with absl flags; pytest's own options
    # ("-v" is absl's --verbosity) would then fail the run. pytest has read
    # them already.
    del sys.argv[1:]

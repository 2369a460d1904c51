"""Reference mobile inference: what an Android/iOS engineer ports.

Everything a phone does with a release folder `OUTPUT/tflite/<version>/`, and
nothing more: read `tokenizer.json` and `vocab.txt`, turn text into int32
token ids with plain string operations, and run `model_<variant>.tflite` with
the LiteRT interpreter. No TensorFlow, no Flex ops, no project code but the
shared names of models/contract.py: each step below maps to a few lines of
Kotlin or Swift (a regex split, a dictionary lookup, an int array), and the
parity tests prove its ids equal the Transform graph's.

    python -m serving.mobile --model_dir=OUTPUT/tflite/<v> [--variant=int8] < texts.jsonl

reads one JSON string per line and prints one `{"probability": p}` per line,
in the same order.

Load-time checks, each naming the file: a model that is missing, truncated
or altered (size and sha256 against manifest.json), not a TFLite flatbuffer,
or whose input is not int32 [1, max_length]; a vocabulary that does not
belong to the model (sha256 in the manifest, and the vocabulary embedded in
the model's metadata).
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import io
import json
import re
import sys
import zipfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from models import contract

__all__ = ["VARIANTS", "SUPPORTED_TOKENIZER_VERSION", "MobileLoadError", "MobileTokenizer",
           "MobileClassifier", "main"]

#: The variants a release folder holds (file model_<variant>.tflite).
VARIANTS = ("float32", "dynamic_range", "float16", "int8")
#: The tokenizer.json rules this module implements.
SUPPORTED_TOKENIZER_VERSION = 2
_MANIFEST, _TOKENIZER = "manifest.json", "tokenizer.json"
_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


class MobileLoadError(ValueError):
    """A release file cannot be used; the message names the file and why."""


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as error:
        raise MobileLoadError(f"{path}: cannot be read: {error.strerror or error}") from error


def _json(path: Path) -> dict[str, Any]:
    try:
        value = json.loads(_read(path))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise MobileLoadError(f"{path}: not valid JSON: {error}") from error
    if not isinstance(value, dict):
        raise MobileLoadError(f"{path}: expected a JSON object")
    return value


@dataclasses.dataclass(frozen=True)
class MobileTokenizer:
    """Text -> int32 ids [max_length], following tokenizer.json.

    Steps (tokenizer.json "steps"): ASCII A-Z -> a-z; split on the delimiter
    regex and drop empty pieces; vocabulary line i -> id i + offset, unknown
    -> oov id; keep the first max_length ids and pad with pad_id.
    """

    delimiter: re.Pattern[str]
    vocab: dict[str, int]
    max_length: int
    vocab_id_offset: int
    pad_id: int

    @property
    def oov_id(self) -> int:
        return len(self.vocab) + self.vocab_id_offset

    @classmethod
    def from_files(cls, tokenizer_json: Path, vocab_txt: Path) -> MobileTokenizer:
        """Reads and checks the spec and the vocabulary (one token per line)."""
        spec = _json(tokenizer_json)
        required = ("tokenizer_version", "lowercase", "delimiter_regex", "vocab_id_offset",
                    "pad_id", "num_oov_buckets", "max_length")
        missing = [key for key in required if key not in spec]
        if missing:
            raise MobileLoadError(f"{tokenizer_json}: missing {', '.join(missing)}")
        if spec["tokenizer_version"] != SUPPORTED_TOKENIZER_VERSION or \
                spec["lowercase"] != "ascii" or spec["num_oov_buckets"] != 1:
            raise MobileLoadError(
                f"{tokenizer_json}: tokenizer_version {spec['tokenizer_version']}, lowercase "
                f"{spec['lowercase']!r}, {spec['num_oov_buckets']} OOV buckets; this runner "
                f"implements version {SUPPORTED_TOKENIZER_VERSION}, 'ascii', 1 bucket")
        try:
            lines = _read(vocab_txt).decode("utf-8").split("\n")
        except UnicodeDecodeError as error:
            raise MobileLoadError(f"{vocab_txt}: not UTF-8: {error}") from error
        if lines and lines[-1] == "":
            lines.pop()
        offset = int(spec["vocab_id_offset"])
        vocab: dict[str, int] = {}
        for index, token in enumerate(lines):
            if not token or token in vocab:
                raise MobileLoadError(f"{vocab_txt}: line {index + 1} is empty or repeated")
            vocab[token] = index + offset
        if not vocab:
            raise MobileLoadError(f"{vocab_txt}: empty vocabulary")
        return cls(re.compile(spec["delimiter_regex"]), vocab, int(spec["max_length"]),
                   offset, int(spec["pad_id"]))

    def tokens(self, text: str) -> list[str]:
        """The review's tokens: ASCII lower-cased, split on the delimiter."""
        return [piece for piece in self.delimiter.split(text.translate(_ASCII_LOWER)) if piece]

    def ids(self, text: str) -> np.ndarray:
        """The model's input row: int32 [max_length]."""
        oov = self.oov_id
        ids = [self.vocab.get(token, oov) for token in self.tokens(text)[:self.max_length]]
        row = np.full([self.max_length], self.pad_id, dtype=np.int32)
        row[:len(ids)] = ids
        return row


def _check_against_manifest(path: Path, payload: bytes, manifest: dict[str, Any] | None,
                            expected: dict[str, Any] | None) -> None:
    if manifest is None or expected is None:
        return
    size, digest = expected.get("size_bytes"), expected.get("sha256")
    if size is not None and len(payload) != size:
        raise MobileLoadError(f"{path}: {len(payload)} bytes, manifest.json says {size}: "
                              "truncated or not the released file")
    if digest is not None and hashlib.sha256(payload).hexdigest() != digest:
        raise MobileLoadError(f"{path}: sha256 differs from manifest.json: not the released file")


def _embedded_vocab(model: bytes, name: str) -> dict[str, int] | None:
    """`token id` lines of the vocabulary packed into the model's metadata."""
    try:
        with zipfile.ZipFile(io.BytesIO(model)) as archive:
            if name not in archive.namelist():
                return None
            lines = archive.read(name).decode("utf-8").splitlines()
    except zipfile.BadZipFile:
        return None
    pairs = (line.rsplit(" ", 1) for line in lines if line)
    return {token: int(index) for token, index in pairs}


def _check_vocab_matches_model(model_path: Path, vocab_txt: Path, tokenizer: MobileTokenizer,
                               embedded: dict[str, int] | None) -> None:
    if embedded is None:
        return
    unknown = embedded.get("<UNKNOWN>")
    wrong = [t for t, i in tokenizer.vocab.items() if embedded.get(t) != i]
    if unknown != tokenizer.oov_id or wrong:
        raise MobileLoadError(
            f"{vocab_txt} does not match {model_path}: {len(tokenizer.vocab)} tokens "
            f"(OOV id {tokenizer.oov_id}), the model's vocabulary has OOV id {unknown}"
            + (f" and maps {wrong[0]!r} differently" if wrong else ""))


class MobileClassifier:
    """One variant of a release folder, loaded and checked, ready to classify."""

    def __init__(self, model_dir: str | Path, variant: str = "float32",
                 num_threads: int | None = None) -> None:
        from ai_edge_litert.interpreter import Interpreter

        if variant not in VARIANTS:
            raise MobileLoadError(f"unknown variant {variant!r}: one of {', '.join(VARIANTS)}")
        folder = Path(model_dir)
        manifest_path = folder / _MANIFEST
        manifest = _json(manifest_path) if manifest_path.exists() else None
        vocab_name = (manifest or {}).get("vocab", "vocab.txt")
        embedded_vocab_name = (manifest or {}).get("mediapipe_vocab", "vocab_mediapipe.txt")
        self.model_path = folder / f"model_{variant}.tflite"
        vocab_path = folder / vocab_name
        self.tokenizer = MobileTokenizer.from_files(folder / _TOKENIZER, vocab_path)
        if manifest is not None:
            digest = manifest.get("side_files", {}).get(vocab_name)
            if digest and hashlib.sha256(_read(vocab_path)).hexdigest() != digest:
                raise MobileLoadError(f"{vocab_path}: sha256 differs from {manifest_path}: "
                                      "the vocabulary does not belong to these models")
        model = _read(self.model_path)
        expected = (manifest or {}).get("variants", {}).get(variant)
        _check_against_manifest(self.model_path, model, manifest, expected)
        if len(model) < 8 or model[4:8] != b"TFL3":
            raise MobileLoadError(f"{self.model_path}: not a TFLite model (no TFL3 identifier)")
        _check_vocab_matches_model(self.model_path, vocab_path, self.tokenizer,
                                   _embedded_vocab(model, embedded_vocab_name))
        try:
            self._interpreter = Interpreter(model_content=model, num_threads=num_threads)
            self._interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as error:
            raise MobileLoadError(f"{self.model_path}: LiteRT cannot load it: {error}") from error
        inputs = self._interpreter.get_input_details()
        outputs = self._interpreter.get_output_details()
        want = [1, self.tokenizer.max_length]
        if len(inputs) != 1 or inputs[0]["dtype"] != np.int32 or \
                list(inputs[0]["shape"]) != want:
            got = [(np.dtype(i["dtype"]).name, list(i["shape"])) for i in inputs]
            raise MobileLoadError(f"{self.model_path}: input {got}, expected one int32 {want} "
                                  f"(max_length of tokenizer.json)")
        if len(outputs) != 1 or int(np.prod(outputs[0]["shape"])) != 1 or \
                outputs[0]["dtype"] != np.float32:
            raise MobileLoadError(f"{self.model_path}: output is not one float32 probability")
        self._input, self._output = inputs[0]["index"], outputs[0]["index"]

    def probability_of_ids(self, row: np.ndarray) -> float:
        """P(positive) of one review's ids, int32 [max_length]."""
        self._interpreter.set_tensor(self._input, row.reshape(1, -1).astype(np.int32))
        self._interpreter.invoke()
        return float(self._interpreter.get_tensor(self._output).reshape(-1)[0])

    def probability(self, text: str) -> float:
        """P(positive) of one review's text."""
        return self.probability_of_ids(self.tokenizer.ids(text))

    def probabilities(self, texts: Iterable[str]) -> list[float]:
        """One review at a time, as a phone runs them."""
        return [self.probability(text) for text in texts]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m serving.mobile",
        description="TF-free TFLite inference: JSON strings on stdin, one "
                    f'{{"{contract.OUTPUT_KEY}": p}} per line on stdout.')
    parser.add_argument("--model_dir", required=True, help="a release folder OUTPUT/tflite/<v>")
    parser.add_argument("--variant", default="float32", choices=VARIANTS)
    parser.add_argument("--num_threads", type=int, default=None, help="LiteRT threads")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """The CLI: exit 0, 1 when the release folder cannot be loaded, 2 on bad input."""
    args = _parser().parse_args(argv)
    try:
        classifier = MobileClassifier(args.model_dir, args.variant, args.num_threads)
    except MobileLoadError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    for number, line in enumerate(sys.stdin, start=1):
        try:
            review = json.loads(line)
        except json.JSONDecodeError as error:
            print(f"error: stdin line {number}: not JSON: {error}", file=sys.stderr)
            return 2
        if not isinstance(review, str):
            print(f"error: stdin line {number}: expected a JSON string, got "
                  f"{type(review).__name__}", file=sys.stderr)
            return 2
        print(json.dumps({contract.OUTPUT_KEY: classifier.probability(review)}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Reference mobile inference: what an Android/iOS engineer ports.

Everything a phone does with a release folder `OUTPUT/tflite/<version>/`, and
nothing more: read `tokenizer.json` and `vocab.txt`, turn text into int32
token ids with plain string operations, and run `model_<variant>.tflite` with
the LiteRT interpreter. No TensorFlow, no Flex ops, no project code but the
shared names of models/contract.py and, for WordPiece models, the plain-Python
tokenizer of models/wordpiece.py: each step maps to a few lines of Kotlin or
Swift (a regex split, a dictionary lookup, an int array), and the parity tests
prove its ids equal the Transform graph's.

tokenizer.json says which tokenizer the model was trained with: the word
tokenizer (no "kind"; models/text.py's rules, implemented below) or "kind":
"wordpiece" (models/wordpiece.py's rules, `wordpiece.ids_py`). Another kind,
or a version of either that this module does not implement, is refused.

    python -m serving.mobile --model_dir=OUTPUT/tflite/<v> [--variant=int8] < texts.jsonl

reads one JSON string per line and prints one `{"probability": p}` per line,
in the same order.

Load-time checks, each naming the file: a model that is missing, truncated
or altered (size and sha256 against manifest.json), not a TFLite flatbuffer,
or whose input is not int32 [1, max_length]; a vocabulary that does not
belong to the model (sha256 in the manifest, and the vocabulary embedded in
the model's metadata; for WordPiece also its size and special tokens against
tokenizer.json).
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
from typing import Any, ClassVar

import numpy as np

from models import contract, wordpiece

__all__ = ["VARIANTS", "SUPPORTED_TOKENIZER_VERSION", "SUPPORTED_WORDPIECE_VERSION",
           "MobileLoadError", "MobileTokenizer", "WordPieceTokenizer", "read_tokenizer",
           "MobileClassifier", "main"]

#: The variants a release folder may hold (file model_<variant>.tflite); an
#: attention encoder's (transformer, MiniLM) has no int8 (convert.variants_for
#: says why).
VARIANTS = ("float32", "dynamic_range", "float16", "int8")
#: The word tokenizer's tokenizer.json rules this module implements.
SUPPORTED_TOKENIZER_VERSION = 2
#: The "kind": "wordpiece" tokenizer.json version this module implements
#: (models/wordpiece.TOKENIZER_VERSION; components/tflite_converter/wordpiece_spec.py writes it).
SUPPORTED_WORDPIECE_VERSION = 1
_MANIFEST, _TOKENIZER = "manifest.json", "tokenizer.json"
#: tokenizer.json's "kind"s; the word tokenizer's file has none.
_WORDS, _WORDPIECE = "words", "wordpiece"
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


def _vocab_lines(vocab_txt: Path) -> list[str]:
    """The tokens of a vocabulary file, one per line, none empty or repeated."""
    try:
        lines = _read(vocab_txt).decode("utf-8").split("\n")
    except UnicodeDecodeError as error:
        raise MobileLoadError(f"{vocab_txt}: not UTF-8: {error}") from error
    if lines and lines[-1] == "":
        lines.pop()
    seen: set[str] = set()
    for index, token in enumerate(lines):
        if not token or token in seen:
            raise MobileLoadError(f"{vocab_txt}: line {index + 1} is empty or repeated")
        seen.add(token)
    if not lines:
        raise MobileLoadError(f"{vocab_txt}: empty vocabulary")
    return lines


def _missing(spec: dict[str, Any], tokenizer_json: Path, required: Sequence[str]) -> None:
    missing = [key for key in required if key not in spec]
    if missing:
        raise MobileLoadError(f"{tokenizer_json}: missing {', '.join(missing)}")


@dataclasses.dataclass(frozen=True)
class MobileTokenizer:
    """Text -> int32 ids [max_length], following tokenizer.json.

    Steps (tokenizer.json "steps"): ASCII A-Z -> a-z; split on the delimiter
    regex and drop empty pieces; vocabulary line i -> id i + offset, unknown
    -> oov id; keep the first max_length ids and pad with pad_id.
    """

    kind: ClassVar[str] = _WORDS
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
        return cls.from_spec(_json(tokenizer_json), tokenizer_json, vocab_txt)

    @classmethod
    def from_spec(cls, spec: dict[str, Any], tokenizer_json: Path,
                  vocab_txt: Path) -> MobileTokenizer:
        """Checks the word tokenizer's spec (read from `tokenizer_json`) and
        reads the vocabulary."""
        if spec.get("kind", _WORDS) != _WORDS:
            raise MobileLoadError(f"{tokenizer_json}: a {spec['kind']!r} tokenizer, not the "
                                  "word tokenizer")
        _missing(spec, tokenizer_json, ("tokenizer_version", "lowercase", "delimiter_regex",
                                        "vocab_id_offset", "pad_id", "num_oov_buckets",
                                        "max_length"))
        if spec["tokenizer_version"] != SUPPORTED_TOKENIZER_VERSION or \
                spec["lowercase"] != "ascii" or spec["num_oov_buckets"] != 1:
            raise MobileLoadError(
                f"{tokenizer_json}: tokenizer_version {spec['tokenizer_version']}, lowercase "
                f"{spec['lowercase']!r}, {spec['num_oov_buckets']} OOV buckets; this runner "
                f"implements version {SUPPORTED_TOKENIZER_VERSION}, 'ascii', 1 bucket")
        offset = int(spec["vocab_id_offset"])
        vocab = {token: index + offset for index, token in enumerate(_vocab_lines(vocab_txt))}
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


@dataclasses.dataclass(frozen=True)
class WordPieceTokenizer:
    """Text -> int32 ids [max_length] by models/wordpiece.py's rules, as a
    "kind": "wordpiece" tokenizer.json describes them ("steps"): HTML tags to
    spaces, NFKC case folding, accents dropped, words split at whitespace and
    punctuation, greedy longest-match WordPiece, head + tail of a long
    review, [CLS] pieces [SEP] padded with [PAD]. Vocabulary line i is id i.
    """

    kind: ClassVar[str] = _WORDPIECE
    vocab: dict[str, int]
    max_length: int

    @classmethod
    def from_spec(cls, spec: dict[str, Any], tokenizer_json: Path,
                  vocab_txt: Path) -> WordPieceTokenizer:
        """Checks the spec against the rules `wordpiece.ids_py` implements and
        the vocabulary against the spec (size, special token ids)."""
        ids = ("cls_id", "sep_id", "pad_id", "unk_id")
        _missing(spec, tokenizer_json, ("tokenizer_version", "suffix_indicator",
                                        "max_bytes_per_word", "unknown_token",
                                        "vocab_id_offset", "vocab_size", *ids, "head", "tail",
                                        "max_length"))
        if spec["tokenizer_version"] != SUPPORTED_WORDPIECE_VERSION:
            raise MobileLoadError(
                f"{tokenizer_json}: wordpiece tokenizer_version {spec['tokenizer_version']!r}; "
                f"this runner implements version {SUPPORTED_WORDPIECE_VERSION}")
        max_length = spec["max_length"]
        if not isinstance(max_length, int) or max_length < wordpiece.MIN_LENGTH:
            raise MobileLoadError(f"{tokenizer_json}: max_length {max_length!r}, expected an "
                                  f"integer >= {wordpiece.MIN_LENGTH}")
        head, tail = wordpiece.head_tail(max_length)
        implemented = {"suffix_indicator": wordpiece.SUFFIX,
                       "max_bytes_per_word": wordpiece.MAX_BYTES_PER_WORD,
                       "unknown_token": wordpiece.UNK, "vocab_id_offset": 0,
                       "head": head, "tail": tail}
        for key, value in implemented.items():
            if spec[key] != value:
                raise MobileLoadError(f"{tokenizer_json}: {key} {spec[key]!r}; this runner "
                                      f"implements {value!r}")
        lines = _vocab_lines(vocab_txt)
        if len(lines) != spec["vocab_size"]:
            raise MobileLoadError(f"{vocab_txt}: {len(lines)} tokens, {tokenizer_json} says "
                                  f"{spec['vocab_size']}: not the model's vocabulary")
        try:
            special = wordpiece.special_ids(lines)
        except ValueError as error:
            raise MobileLoadError(f"{vocab_txt}: {error}") from error
        for key, token in zip(ids, (wordpiece.CLS, wordpiece.SEP, wordpiece.PAD, wordpiece.UNK),
                              strict=True):
            if spec[key] != special[token]:
                raise MobileLoadError(f"{vocab_txt}: {token} is id {special[token]}, "
                                      f"{tokenizer_json} says {key} {spec[key]!r}")
        return cls({token: index for index, token in enumerate(lines)}, max_length)

    def ids(self, text: str) -> np.ndarray:
        """The model's input row: int32 [max_length]."""
        return np.asarray(wordpiece.ids_py(text, self.vocab, self.max_length), dtype=np.int32)


def read_tokenizer(tokenizer_json: Path,
                   vocab_txt: Path) -> MobileTokenizer | WordPieceTokenizer:
    """The tokenizer a release folder's tokenizer.json describes, with its
    vocabulary; a kind this runner does not implement is refused."""
    spec = _json(tokenizer_json)
    kind = spec.get("kind", _WORDS)
    if kind == _WORDPIECE:
        return WordPieceTokenizer.from_spec(spec, tokenizer_json, vocab_txt)
    if kind == _WORDS:
        return MobileTokenizer.from_spec(spec, tokenizer_json, vocab_txt)
    raise MobileLoadError(f"{tokenizer_json}: tokenizer kind {kind!r} is not one this runner "
                          f"implements ({_WORDS!r}, {_WORDPIECE!r})")


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


def _packed_file(model: bytes, name: str) -> bytes | None:
    """A file packed into the model's metadata (None when there is none)."""
    try:
        with zipfile.ZipFile(io.BytesIO(model)) as archive:
            if name not in archive.namelist():
                return None
            return archive.read(name)
    except zipfile.BadZipFile:
        return None


def _embedded_vocab(model: bytes, name: str) -> dict[str, int] | None:
    """`token id` lines of the vocabulary packed into the model's metadata."""
    packed = _packed_file(model, name)
    if packed is None:
        return None
    lines = packed.decode("utf-8").splitlines()
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


def _check_wordpiece_vocab_matches_model(model_path: Path, vocab_txt: Path,
                                         embedded: bytes | None) -> None:
    if embedded is None:
        return
    shipped = _read(vocab_txt)
    if embedded != shipped:
        lines = embedded.count(b"\n"), shipped.count(b"\n")
        raise MobileLoadError(
            f"{vocab_txt} does not match {model_path}: {lines[1]} lines, the vocabulary "
            f"packed into the model has {lines[0]}" + (" and differs" if lines[0] == lines[1]
                                                      else ""))


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
        vocab_path, tokenizer_path = folder / vocab_name, folder / _TOKENIZER
        self.tokenizer = read_tokenizer(tokenizer_path, vocab_path)
        if manifest is not None:
            said = manifest.get("tokenizer_kind", _WORDS)
            if said != self.tokenizer.kind:
                raise MobileLoadError(f"{tokenizer_path}: a {self.tokenizer.kind} tokenizer, "
                                      f"{manifest_path} says {said}")
            digest = manifest.get("side_files", {}).get(vocab_name)
            if digest and hashlib.sha256(_read(vocab_path)).hexdigest() != digest:
                raise MobileLoadError(f"{vocab_path}: sha256 differs from {manifest_path}: "
                                      "the vocabulary does not belong to these models")
        model = _read(self.model_path)
        expected = (manifest or {}).get("variants", {}).get(variant)
        _check_against_manifest(self.model_path, model, manifest, expected)
        if len(model) < 8 or model[4:8] != b"TFL3":
            raise MobileLoadError(f"{self.model_path}: not a TFLite model (no TFL3 identifier)")
        if isinstance(self.tokenizer, WordPieceTokenizer):
            # Packed under its own name: a WordPiece model has no MediaPipe vocabulary.
            _check_wordpiece_vocab_matches_model(self.model_path, vocab_path,
                                                 _packed_file(model, vocab_name))
        else:
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

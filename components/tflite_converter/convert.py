"""SavedModel -> TFLite: conversion variants, the agreement check and the
manifest entries of the files an app ships.

The TFLite model starts from the SavedModel's `token_ids` signature (int32 ids
-> probability): builtin ops only, so any LiteRT runtime can run it. Raw-text
input would need Flex (select TF) ops, which mobile runtimes do not ship, so
tokenisation happens in the app with the shipped vocabulary and tokenizer spec
(or, for the word tokenizer, in MediaPipe / the Task Library from the
embedded metadata).

Two tokenizers (models/config.py's TOKENIZERS): "words" ships the Transform
vocabulary, MediaPipe's `token id` vocabulary and models/text.py's spec;
"wordpiece" ships the encoder's WordPiece vocabulary (line i = id i) and
wordpiece_spec.py's spec, with no MediaPipe tokenizer metadata.

Why not `TFLiteConverter.from_saved_model`: on a Keras 3 SavedModel it drops
the weights (a 7 KB model that outputs NaN). `from_concrete_functions` with the
loaded object as trackable keeps them.

How a caller (the TFLiteConverter component) uses this module:

    files, entries = convert_all(loaded, calibration_ids=<train/valid ids>,
                                 check_ids=<valid ids>, reference=<SavedModel p>,
                                 labels=<valid labels>, vocab=<vocabulary>,
                                 tokenizer=<"words" | "wordpiece">)
    side = side_files(vocab, max_length, num_oov_buckets, tokenizer)
    manifest = build_manifest(version, max_length, entries, side, tokenizer=tokenizer)

then writes `files` and `side` into the release folder and `manifest` as
manifest.json. `convert_all` raises `DisagreementError` when a variant is
outside its tolerance.
"""

from __future__ import annotations

import dataclasses
import gc
import hashlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import tensorflow as tf

from components.errors import UserFacingError
from components.tflite_converter import metadata as md
from components.tflite_converter import wordpiece_spec
from models import contract, text

__all__ = ["Variant", "VARIANTS", "Probes", "probe_texts", "probe_agreement",
           "calibration_rows", "refusal", "DisagreementError", "convert", "tflite_probabilities",
           "agreement", "accuracy", "model_io", "convert_all", "side_files", "build_manifest",
           "variant_file", "MANIFEST", "TOKENIZER", "VOCAB", "MEDIAPIPE_VOCAB", "LABELS_FILE",
           "WORDS", "WORDPIECE", "variants_for"]

#: Files of a release folder beside the models.
MANIFEST, TOKENIZER, VOCAB = "manifest.json", "tokenizer.json", "vocab.txt"
#: `token id` per line, case variants included: what MediaPipe's RegexTokenizer reads.
MEDIAPIPE_VOCAB = "vocab_mediapipe.txt"
#: One line: the class the sigmoid output scores.
LABELS_FILE = "labels.txt"
#: The tokenizers a release folder can be made for (models/config.py's TOKENIZERS values).
WORDS, WORDPIECE = "words", wordpiece_spec.KIND

#: Reviews fed to the int8 calibrator: a few hundred cover the activation ranges.
CALIBRATION_STEPS = 300
#: Short reviews fed to the calibrator besides: the first SHORT_ROWS
#: calibration reviews cut to each of these lengths (0: an empty review).
#: Full-length reviews alone leave the masked means' ranges narrower than a
#: one-word review needs.
SHORT_LENGTHS, SHORT_ROWS = (0, 1, 2, 3, 5, 8, 13, 21, 34), 8

#: Inputs long `valid` reviews never show, on which every variant must also
#: follow the SavedModel (`probe_texts` adds the longest allowed review).
#: Until they were checked, an int8 CNN answered the empty review 0.000
#: (SavedModel 0.497) and "good" 0.059 (0.797).
PROBE_TEXTS = ("", "good", "bad", "Fine.", "the", "an", "awful", "not good", "great movie",
               "I loved it", "Terrible acting, boring plot.", "!!!", "?", "...",
               "\U0001F600\U0001F600", "xqzv blorf", "zzzzqqq")
#: A probe's decision counts (label agreement) only where the SavedModel's
#: probability is at least this far from 0.5, and further than the variant's
#: probe tolerance lets the file move it: an empty review scores about 0.5,
#: and int8's output step (1/256) alone can move it across.
PROBE_DECIDED = 0.05

Calibration = np.ndarray | None


@dataclasses.dataclass(frozen=True)
class Variant:
    """One TFLite flavour and how closely it must follow the SavedModel.

    The tolerances are defaults: the pipeline's config may override them with
    `dataclasses.replace`.
    """

    name: str
    max_abs_diff: float  # largest tolerated |p_tflite - p_savedmodel|
    min_agreement: float  # share of reviews whose 0.5-thresholded label must match
    configure: Callable[[tf.lite.TFLiteConverter, Calibration], None]
    needs_calibration: bool = False
    #: TFLite builtin ops left in float32 (selective quantisation); all others integer.
    float_ops: tuple[str, ...] = ()
    #: largest tolerated |p_tflite - p_savedmodel| on the probes (PROBE_TEXTS)
    probe_max_abs_diff: float = 1e-4


@dataclasses.dataclass(frozen=True)
class Probes:
    """The short and degenerate inputs (probe_texts), as the model's ids, and
    the SavedModel's probabilities on them."""

    texts: tuple[str, ...]
    ids: np.ndarray
    reference: np.ndarray


def probe_texts(max_length: int) -> tuple[str, ...]:
    """PROBE_TEXTS and a review of more than `max_length` words (the longest
    allowed, once truncated)."""
    return (*PROBE_TEXTS, " ".join(["the", "film"] * max_length))


def _float32(converter: tf.lite.TFLiteConverter, calibration: Calibration) -> None:
    del converter, calibration


def _dynamic_range(converter: tf.lite.TFLiteConverter, calibration: Calibration) -> None:
    del calibration
    converter.optimizations = [tf.lite.Optimize.DEFAULT]


def _float16(converter: tf.lite.TFLiteConverter, calibration: Calibration) -> None:
    del calibration
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.target_spec.supported_types = [tf.float16]


def _representative(calibration: np.ndarray) -> Callable[[], Iterator[list[np.ndarray]]]:
    def dataset() -> Iterator[list[np.ndarray]]:
        for row in calibration.astype(np.int32):
            yield [row[None, :]]
    return dataset


def calibration_rows(ids: np.ndarray) -> np.ndarray:
    """What the int8 calibrator sees: the first CALIBRATION_STEPS reviews,
    then the first SHORT_ROWS of them cut to each of SHORT_LENGTHS tokens
    (ids are right-padded with 0)."""
    full = np.asarray(ids)[:CALIBRATION_STEPS]
    short = []
    for length in SHORT_LENGTHS:
        for row in full[:SHORT_ROWS]:
            cut = np.zeros_like(row)
            cut[:length] = row[:length]
            short.append(cut)
    return np.concatenate([full, np.stack(short)]) if short else full


def _int8(converter: tf.lite.TFLiteConverter, calibration: Calibration) -> None:
    if calibration is None or not len(calibration):
        raise ValueError("the int8 variant needs token ids of train/valid reviews to calibrate")
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = _representative(calibration_rows(calibration))
    # Integer kernels only: weights and activations int8. The input stays the
    # int32 token ids (they index the embedding, nothing to quantise) and the
    # output stays float32 (a Dequantize op at the end): apps and MediaPipe
    # read P(positive) as a float.
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]


VARIANTS = (
    Variant("float32", max_abs_diff=1e-4, min_agreement=1.0, configure=_float32,
            probe_max_abs_diff=1e-4),
    Variant("dynamic_range", max_abs_diff=0.1, min_agreement=0.99, configure=_dynamic_range,
            probe_max_abs_diff=0.1),
    Variant("float16", max_abs_diff=0.01, min_agreement=0.995, configure=_float16,
            probe_max_abs_diff=0.01),
    # SUM, MAXIMUM and DIV are the masked means over a review's real tokens
    # (embeddings and hashed bigrams): sum / maximum(count, 1). Per-tensor
    # int8 scales on them flipped 5% of the decisions (max |dp| 0.65 on train
    # reviews). MAXIMUM in int8 also took the scale of counts up to
    # max_length: at 512 tokens a step is 2.0, so maximum(count, 1) became 0
    # for an empty review (0/0) and 0 or 2 for one word, and the int8 CNN
    # answered "" 0.000 and "good" 0.059 (SavedModel 0.497, 0.797). Kept in
    # float (with short reviews in the calibration) they agree within 0.02 on
    # the probes. They are a handful of cheap ops; every weight and the
    # convolutions, gathers, max-pools and dense layers stay int8. The probe
    # tolerance, 0.2, lies between what sound int8 files do (0.012 for that
    # CNN, 0.13 for the tests' tiny MiniLM with its sharpened head) and what
    # the bug did (0.5 to 0.74).
    Variant("int8", max_abs_diff=0.3, min_agreement=0.98, configure=_int8,
            needs_calibration=True, float_ops=("SUM", "MAXIMUM", "DIV"),
            probe_max_abs_diff=0.2),
)


def variants_for(int8: bool) -> tuple[Variant, ...]:
    """The variants a model ships: all four, or without int8 for the
    attention encoders (models.config.INT8_TFLITE). Integer activations
    through layer norms, GELUs and attention softmaxes flip decisions:
    all-MiniLM-L6-v2 fine-tuned at 128 pieces agreed on 0.879 of 256 valid
    reviews (max |dp| 0.82); the 2-layer transformer at 256 tokens on 0.9805
    from scratch and 0.9766 after masked-LM pre-training (max |dp| 0.46),
    against a 0.98 floor, for a file 1% smaller than dynamic_range's (the
    embedding dominates both). Their small file is dynamic_range: int8
    weights, float activations."""
    return VARIANTS if int8 else tuple(v for v in VARIANTS if v.name != "int8")


class DisagreementError(UserFacingError, RuntimeError):
    """A TFLite variant is outside its tolerance: nothing may be published."""


def variant_file(name: str) -> str:
    """File name of one variant in the release folder."""
    return f"model_{name}.tflite"


def _mobile_function(loaded: Any, signature: str, max_length: int) -> Any:
    """The signature with the shapes phones and MediaPipe expect: ids [1, N]
    in, probability [1, 1] out (MediaPipe reads a 2-D [batch, classes] score)."""
    serving = loaded.signatures[signature]

    @tf.function(input_signature=[
        tf.TensorSpec([1, max_length], tf.int32, name=contract.INPUT_TOKEN_IDS)])
    def mobile(token_ids: tf.Tensor) -> dict[str, tf.Tensor]:
        probability = serving(**{contract.INPUT_TOKEN_IDS: token_ids})[contract.OUTPUT_KEY]
        return {contract.OUTPUT_KEY: tf.reshape(probability, [1, 1])}

    return mobile.get_concrete_function()


def _max_length(loaded: Any, signature: str) -> int:
    spec = loaded.signatures[signature].structured_input_signature[1]
    return int(spec[contract.INPUT_TOKEN_IDS].shape[1])


def convert(loaded: Any, signature: str, variant: Variant,
            calibration: Calibration = None) -> bytes:
    """TFLite flatbuffer of one signature of a loaded SavedModel, builtin ops
    only, input int32 [1, max_length], output float32 [1, 1]."""
    concrete = _mobile_function(loaded, signature, _max_length(loaded, signature))
    converter = tf.lite.TFLiteConverter.from_concrete_functions([concrete], loaded)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    variant.configure(converter, calibration)
    if not variant.float_ops:
        return bytes(converter.convert())
    # Selective quantisation, as TF's quantisation-debugger guide does it: the
    # denylisted ops run in float with (de)quantize ops around them.
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8,
                                           tf.lite.OpsSet.TFLITE_BUILTINS]
    debugger = tf.lite.experimental.QuantizationDebugger(
        converter=converter, debug_dataset=_representative(np.asarray(calibration)[:8]),
        debug_options=tf.lite.experimental.QuantizationDebugOptions(
            denylisted_ops=list(variant.float_ops)))
    return bytes(debugger.get_nondebug_quantized_model())


def tflite_probabilities(model: bytes, token_ids: np.ndarray) -> np.ndarray:
    """Runs the TFLite model one review at a time, as a phone would."""
    from ai_edge_litert.interpreter import Interpreter  # only conversion needs LiteRT

    interpreter = Interpreter(model_content=model)
    interpreter.allocate_tensors()
    [inp] = interpreter.get_input_details()
    [out] = interpreter.get_output_details()
    result = []
    for row in token_ids.astype(np.int32):
        interpreter.set_tensor(inp["index"], row[None, :])
        interpreter.invoke()
        result.append(float(np.reshape(interpreter.get_tensor(out["index"]), [-1])[0]))
    return np.asarray(result, dtype=np.float32)


def agreement(reference: np.ndarray, candidate: np.ndarray) -> dict[str, float]:
    """How closely a variant follows the SavedModel: largest probability gap
    and the share of reviews with the same decision at 0.5."""
    return {
        "max_abs_diff": float(np.max(np.abs(reference - candidate))) if len(reference) else 0.0,
        "label_agreement": float(np.mean((reference >= 0.5) == (candidate >= 0.5)))
        if len(reference) else 1.0,
        "examples": len(reference),
    }


def _shortened(text: str, most: int = 40) -> str:
    return text if len(text) <= most else f"{text[:most]}... ({len(text)} characters)"


def probe_agreement(probes: Probes, candidate: np.ndarray,
                    tolerance: float = PROBE_DECIDED) -> dict[str, Any]:
    """How closely a variant follows the SavedModel on the probes: the
    largest probability gap (and the probe it is on), and the share of the
    decided probes (further from 0.5 than PROBE_DECIDED and `tolerance`, the
    variant's probe tolerance) with the same decision at 0.5."""
    gaps = np.abs(probes.reference - candidate)
    decided = np.abs(probes.reference - 0.5) > max(PROBE_DECIDED, tolerance)
    same = (probes.reference >= 0.5) == (candidate >= 0.5)
    worst = int(np.argmax(gaps)) if len(gaps) else None
    return {
        "max_abs_diff": float(gaps.max()) if len(gaps) else 0.0,
        "label_agreement": float(np.mean(same[decided])) if decided.any() else 1.0,
        "examples": len(gaps),
        "worst": None if worst is None else {
            "text": _shortened(probes.texts[worst]),
            "saved_model": float(probes.reference[worst]),
            "tflite": float(candidate[worst])},
    }


def refusal(variant: Variant, check: dict[str, Any], probes: dict[str, Any]) -> str | None:
    """Why a variant may not ship, or None when it is within its tolerances."""
    # `not <=`: a NaN probability is outside every tolerance.
    if not (check["max_abs_diff"] <= variant.max_abs_diff
            and check["label_agreement"] >= variant.min_agreement):
        return (f"TFLite variant {variant.name} disagrees with the SavedModel: {check} "
                f"(tolerance: max_abs_diff <= {variant.max_abs_diff}, "
                f"label_agreement >= {variant.min_agreement}); nothing was released")
    if not (probes["max_abs_diff"] <= variant.probe_max_abs_diff
            and probes["label_agreement"] >= variant.min_agreement):
        worst = probes["worst"]
        return (f"TFLite variant {variant.name} disagrees with the SavedModel on short "
                f"inputs: {worst['text']!r} -> {worst['tflite']:.3f}, SavedModel "
                f"{worst['saved_model']:.3f} (probes: max_abs_diff "
                f"{probes['max_abs_diff']:.4f} <= {variant.probe_max_abs_diff}, "
                f"label_agreement {probes['label_agreement']:.3f} >= "
                f"{variant.min_agreement}); nothing was released")
    return None


def accuracy(probabilities: np.ndarray, labels: np.ndarray) -> float:
    """Share of reviews whose 0.5-thresholded decision equals the label."""
    return float(np.mean((probabilities >= 0.5) == (np.asarray(labels) == 1)))


def model_io(model: bytes) -> dict[str, dict[str, Any]]:
    """The input and output specs an app must match, read from the flatbuffer."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=model)
    [inp] = interpreter.get_input_details()
    [out] = interpreter.get_output_details()
    return {key: {"name": d["name"], "dtype": np.dtype(d["dtype"]).name,
                  "shape": [int(n) for n in d["shape"]]}
            for key, d in (("input", inp), ("output", out))}


def _check_tokenizer(tokenizer: str) -> None:
    if tokenizer not in (WORDS, WORDPIECE):
        raise ValueError(f"tokenizer {tokenizer!r}: one of {WORDS!r}, {WORDPIECE!r}")


def _vocab_file(vocab: Sequence[str]) -> bytes:
    return "".join(f"{token}\n" for token in vocab).encode()


def _mediapipe_vocab(vocab: Sequence[str]) -> bytes:
    return ("\n".join(text.mediapipe_vocab_lines(vocab)) + "\n").encode()


def _embedded_vocabulary(vocab: Sequence[str], tokenizer: str,
                         ) -> tuple[str, bytes, str | None]:
    """(file name, bytes, delimiter regex or None) of the vocabulary packed
    into each model: MediaPipe's for the word tokenizer, vocab.txt and no
    MediaPipe tokenizer for WordPiece."""
    if tokenizer == WORDPIECE:
        return VOCAB, _vocab_file(vocab), None
    return MEDIAPIPE_VOCAB, _mediapipe_vocab(vocab), text.DELIMITER


def convert_all(loaded: Any, calibration_ids: np.ndarray, check_ids: np.ndarray,
                reference: np.ndarray, vocab: Sequence[str], probes: Probes,
                labels: np.ndarray | None = None,
                variants: Sequence[Variant] = VARIANTS,
                signature: str = contract.SIGNATURE_TOKEN_IDS,
                tokenizer: str = WORDS,
                ) -> tuple[dict[str, bytes], dict[str, dict[str, Any]]]:
    """Every variant, checked against the SavedModel and with metadata embedded.

    calibration_ids: token ids of train/valid reviews (never eval) for int8.
    check_ids, reference, labels: valid reviews' ids, the SavedModel's
    probabilities on them and their labels (for the accuracy in the manifest).
    probes: the short and degenerate inputs (probe_texts), checked with each
    variant's probe tolerance.
    vocab: the Transform vocabulary ("words") or the encoder's WordPiece
    vocabulary ("wordpiece"), in id order.
    Returns {file name: flatbuffer} and {variant name: manifest entry}; raises
    DisagreementError naming the first variant outside its tolerance.
    """
    _check_tokenizer(tokenizer)
    vocab_name, vocab_bytes, delimiter = _embedded_vocabulary(vocab, tokenizer)
    files: dict[str, bytes] = {}
    entries: dict[str, dict[str, Any]] = {}
    float32_size = None
    for variant in variants:
        plain = convert(loaded, signature, variant,
                        calibration_ids if variant.needs_calibration else None)
        probabilities = tflite_probabilities(plain, check_ids)
        check = agreement(reference, probabilities)
        on_probes = probe_agreement(probes, tflite_probabilities(plain, probes.ids),
                                    variant.probe_max_abs_diff)
        why = refusal(variant, check, on_probes)
        if why:
            raise DisagreementError(why)
        flatbuffer = md.embed_metadata(plain, vocab=vocab_bytes,
                                       labels=(contract.POSITIVE_LABEL,),
                                       vocab_name=vocab_name, labels_name=LABELS_FILE,
                                       delimiter_regex=delimiter,
                                       model_name=f"imdb_sentiment ({variant.name})")
        name = variant_file(variant.name)
        files[name] = flatbuffer
        float32_size = float32_size or (len(flatbuffer) if variant.name == "float32" else None)
        entry: dict[str, Any] = {
            "file": name,
            "sha256": hashlib.sha256(flatbuffer).hexdigest(),
            "size_bytes": len(flatbuffer),
            **model_io(flatbuffer),
            "builtin_ops_only": "CUSTOM" not in md.operator_names(flatbuffer),
            "tensor_types": md.tensor_types(flatbuffer),
            **check,
            "probes": on_probes,
            "tolerance": {"max_abs_diff": variant.max_abs_diff,
                          "min_agreement": variant.min_agreement,
                          "probe_max_abs_diff": variant.probe_max_abs_diff},
        }
        if labels is not None:
            entry["accuracy"] = accuracy(probabilities, labels)
            entry["reference_accuracy"] = accuracy(reference, labels)
        entries[variant.name] = entry
        # A conversion leaves its converter and MLIR module in reference
        # cycles: collected now, the run's peak memory (here) is 90 MiB lower.
        gc.collect()
    for entry in entries.values():
        entry["size_ratio_to_float32"] = (entry["size_bytes"] / float32_size
                                          if float32_size else None)
    return files, entries


def side_files(vocab: Sequence[str], max_length: int, num_oov_buckets: int,
               tokenizer: str = WORDS) -> dict[str, bytes]:
    """The files an app ships beside the models: the vocabulary (one token per
    line), the tokenizer spec and the label file; for the word tokenizer
    (line i -> id i + ID_OFFSET) also MediaPipe's `token id` vocabulary. A
    WordPiece vocabulary maps line i to id i, and has no OOV buckets
    (`num_oov_buckets` is the word tokenizer's)."""
    import json

    _check_tokenizer(tokenizer)
    if tokenizer == WORDPIECE:
        spec = wordpiece_spec.tokenizer_spec(vocab, max_length, VOCAB)
        # ASCII escapes: the spec's code points include invisible ones.
        return {
            VOCAB: _vocab_file(vocab),
            TOKENIZER: json.dumps(spec, indent=2).encode(),
            LABELS_FILE: f"{contract.POSITIVE_LABEL}\n".encode(),
        }
    spec = text.tokenizer_spec(max_length, VOCAB, num_oov_buckets,
                               mediapipe_vocab_file=MEDIAPIPE_VOCAB)
    return {
        VOCAB: _vocab_file(vocab),
        MEDIAPIPE_VOCAB: _mediapipe_vocab(vocab),
        TOKENIZER: json.dumps(spec, indent=2, ensure_ascii=False).encode(),
        LABELS_FILE: f"{contract.POSITIVE_LABEL}\n".encode(),
    }


def build_manifest(version: int, max_length: int, entries: Mapping[str, Mapping[str, Any]],
                   side: Mapping[str, bytes], check_split: str = contract.VALID,
                   tokenizer: str = WORDS, blended: bool = False) -> dict[str, Any]:
    """manifest.json of a release folder: what each file is and how it was checked.

    A WordPiece folder's manifest says so in "tokenizer_kind" and names no
    MediaPipe vocabulary; a word-tokenizer manifest is as it was before
    WordPiece existed (no "tokenizer_kind": readers take its absence as "words").
    "saved_model_blends_ngrams" (`blended`) warns an app that compares with
    the server: the served text signatures then blend this classifier with
    NB-LR, so they score differently from these files (the classifier alone)."""
    _check_tokenizer(tokenizer)
    files: dict[str, Any] = (
        {"vocab": VOCAB, "tokenizer": TOKENIZER, "tokenizer_kind": WORDPIECE}
        if tokenizer == WORDPIECE else
        {"vocab": VOCAB, "mediapipe_vocab": MEDIAPIPE_VOCAB, "tokenizer": TOKENIZER})
    return {
        "version": int(version),
        "input": {"name": contract.INPUT_TOKEN_IDS, "dtype": "int32", "shape": [1, max_length]},
        "output": {"name": contract.OUTPUT_KEY, "dtype": "float32", "shape": [1, 1],
                   "meaning": f"P({contract.POSITIVE_LABEL})"},
        "agreement_split": check_split,
        "saved_model_blends_ngrams": bool(blended),
        **files,
        "labels": LABELS_FILE,
        "side_files": {name: hashlib.sha256(payload).hexdigest()
                       for name, payload in side.items()},
        "variants": {name: dict(entry) for name, entry in entries.items()},
    }

"""A WordPiece model (--model=minilm) on the phone: its release folder
(vocab.txt, a kind-wordpiece tokenizer.json, no MediaPipe tokenizer) and
serving/mobile.py tokenising with models/wordpiece.py's Python twin.

A tiny randomly initialised MiniLM over the encoder's real vocabulary is
exported with the trainer's `token_ids` signature and converted with
convert_all and side_files as TFLiteCheck does for `tokenizer="wordpiece"`.
Its head is scaled (as tests/test_transformer.py does) and centred on the
calibration reviews, so probabilities spread over (0, 1), both decisions
occur and a rounding error could flip one.
"""

from __future__ import annotations

import io
import json
import sys
import unicodedata
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

from components.tflite_converter import convert as conv
from components.tflite_converter import metadata as md
from models import contract, minilm, text, wordpiece
from models.config import INT8_TFLITE
from pipeline.config import TrainConfig
from serving import mobile
from serving.mobile import VARIANTS, MobileClassifier, MobileLoadError, WordPieceTokenizer
from tests.token_ids_export import save_token_ids_model

MAX_LENGTH = 32
TINY = TrainConfig(model="minilm", encoder_init="random", embedding_dim=16, num_heads=2,
                   ff_dim=32, num_layers=1, dropout=0.0)
VOCAB = minilm.read_vocabulary(minilm.package_dir())
WORDS = ["the", "film", "movie", "plot", "acting", "was", "great", "awful", "boring",
         "brilliant", "not", "really", "very", "wonderful", "terrible", "ending", "actors",
         "script", "café", "naïve", "ÉMIGRÉ", "don't", "10/10", "!!!", "...", "<br /><br />",
         "映画", "supercalifragilistic", "unbelievably"]
# What phones get that generated reviews lack.
HARD_TEXTS = ["", " \t\n ", "<p>GREAT</p><br/>film", "Crème brûlée, naïve café; über-cool.",
              "zero\u200bwidth soft\u00adhyphen \ufeffbom \x07bell", "Stunning 日本語 😀 10/10",
              "x" * 120 + " " + "great " * 60 + "worst ending ever"]
RELEASE_FILES = {*(conv.variant_file(v) for v in VARIANTS), conv.VOCAB, conv.TOKENIZER,
                 conv.LABELS_FILE, conv.MANIFEST}


def _reviews(count: int, seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    return [" ".join(rng.choice(WORDS, size=int(rng.integers(1, 40)))) for _ in range(count)]


def _graph_ids(texts: list[str]) -> np.ndarray:
    """The ids the Transform graph computes (tensorflow-text)."""
    return wordpiece.tokenize_tf(tf.constant(texts), VOCAB, MAX_LENGTH).numpy().astype(np.int32)


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    """A WordPiece release folder as TFLiteCheck writes it, plus what made it."""
    temp = tmp_path_factory.mktemp("mobile_wordpiece")
    keras.utils.set_random_seed(0)
    model = minilm.build_minilm(TINY, max_length=MAX_LENGTH)
    calibration, check = _graph_ids(_reviews(200, seed=2)), _reviews(60, seed=1)
    head = model.get_layer(contract.OUTPUT_KEY)
    kernel, _ = head.get_weights()
    pooled = keras.Model(model.input, model.get_layer("masked_mean").output)(calibration)
    head.set_weights([kernel * 20, -np.median(np.asarray(pooled) @ (kernel * 20), axis=0)])
    loaded = save_token_ids_model(model, temp / "saved_model", MAX_LENGTH)
    reference = loaded.signatures[contract.SIGNATURE_TOKEN_IDS](
        token_ids=tf.constant(_graph_ids(check)))[contract.OUTPUT_KEY].numpy()
    probe_texts = conv.probe_texts(MAX_LENGTH)
    probe_ids = _graph_ids(list(probe_texts))
    probes = conv.Probes(probe_texts, probe_ids, loaded.signatures[contract.SIGNATURE_TOKEN_IDS](
        token_ids=tf.constant(probe_ids))[contract.OUTPUT_KEY].numpy())
    files, entries = conv.convert_all(loaded, calibration_ids=calibration,
                                      check_ids=_graph_ids(check), reference=reference,
                                      vocab=VOCAB, probes=probes, tokenizer=conv.WORDPIECE)
    side = conv.side_files(VOCAB, MAX_LENGTH, 1, conv.WORDPIECE)
    folder = temp / "tflite" / "1"
    folder.mkdir(parents=True)
    for name, payload in {**files, **side}.items():
        (folder / name).write_bytes(payload)
    manifest = conv.build_manifest(1, MAX_LENGTH, entries, side, tokenizer=conv.WORDPIECE)
    (folder / conv.MANIFEST).write_text(json.dumps(manifest))
    texts = check + HARD_TEXTS
    keras_p = np.reshape(model(_graph_ids(texts)), [-1])
    return {"dir": folder, "manifest": manifest, "texts": texts, "keras": keras_p,
            "reference": reference}


def _copy(release: dict, tmp_path: Path) -> Path:
    folder = tmp_path / "release"
    folder.mkdir()
    for path in release["dir"].iterdir():
        (folder / path.name).write_bytes(path.read_bytes())
    return folder


def _spec(folder: Path) -> dict:
    return json.loads((folder / conv.TOKENIZER).read_text())


@pytest.mark.parametrize("variant", VARIANTS)
def test_reference_runner_follows_the_keras_model_on_each_variant(release, variant):
    """Raw text -> serving.mobile (Python WordPiece + LiteRT) gives the Keras
    model's probabilities on the Transform graph's ids, within the variant's
    tolerance, on generated reviews and on the inputs phones get wrong."""
    classifier = MobileClassifier(release["dir"], variant)
    got = np.array(classifier.probabilities(release["texts"]))
    tolerance = conv.VARIANTS[VARIANTS.index(variant)]
    assert np.max(np.abs(got - release["keras"])) <= tolerance.max_abs_diff + 1e-6
    assert release["manifest"]["variants"][variant]["label_agreement"] >= \
        tolerance.min_agreement
    assert 0.2 < (release["keras"] >= 0.5).mean() < 0.8  # both decisions are checked


def test_the_phone_tokenizer_gives_the_transform_graph_ids(release):
    """Including long reviews (head + tail kept), HTML, accents, CJK, emoji,
    invisible characters and empty text."""
    tokenizer = MobileClassifier(release["dir"], "float32").tokenizer
    assert isinstance(tokenizer, WordPieceTokenizer)
    got = np.stack([tokenizer.ids(t) for t in release["texts"]])
    expected = _graph_ids(release["texts"])
    np.testing.assert_array_equal(got, expected)
    assert got.dtype == np.int32
    assert (expected[:, -1] != text.PAD_ID).any()  # some reviews were cut to head + tail


def test_the_release_folder_ships_the_wordpiece_vocabulary_and_no_mediapipe_tokenizer(release):
    folder = release["dir"]
    assert {p.name for p in folder.iterdir()} == RELEASE_FILES
    assert (folder / conv.VOCAB).read_bytes() == \
        (minilm.package_dir() / "vocab.txt").read_bytes()  # line i = id i, no offset
    manifest = release["manifest"]
    assert manifest["tokenizer_kind"] == "wordpiece"
    assert "mediapipe_vocab" not in manifest
    assert manifest["vocab"] == conv.VOCAB and manifest["tokenizer"] == conv.TOKENIZER
    for name, entry in manifest["variants"].items():
        model = (folder / entry["file"]).read_bytes()
        assert entry["builtin_ops_only"] is True, name
        assert entry["input"]["dtype"] == "int32" and entry["input"]["shape"] == [1, MAX_LENGTH]
        # The model/labels metadata stays; the vocabulary is packed beside the
        # labels (no RegexTokenizer: MediaPipe cannot run a one-input WordPiece model).
        assert md.has_metadata(model)
        assert md.associated_files(model) == {
            conv.VOCAB: (folder / conv.VOCAB).read_bytes(),
            conv.LABELS_FILE: f"{contract.POSITIVE_LABEL}\n".encode()}
        assert text.DELIMITER.encode() not in model


def test_tokenizer_json_is_a_wordpiece_spec_with_the_models_ids(release):
    spec = _spec(release["dir"])
    head, tail = wordpiece.head_tail(MAX_LENGTH)
    index = {token: i for i, token in enumerate(VOCAB)}
    assert spec["kind"] == "wordpiece"
    assert spec["tokenizer_version"] == mobile.SUPPORTED_WORDPIECE_VERSION
    assert spec["case_folding"] == "NFKC_Casefold" and "Mn" in spec["strip_accents"]
    assert spec["html_tag_regex"] == text.HTML_TAG
    assert spec["suffix_indicator"] == "##" and spec["max_bytes_per_word"] == 100
    assert spec["unknown_token"] == "[UNK]"
    assert (spec["cls_id"], spec["sep_id"], spec["pad_id"], spec["unk_id"]) == (
        index["[CLS]"], index["[SEP]"], 0, index["[UNK]"])
    assert (spec["head"], spec["tail"]) == (head, tail) and head + tail == MAX_LENGTH - 2
    assert spec["max_length"] == MAX_LENGTH and spec["truncate"] == "head_tail"
    assert spec["input_dtype"] == "int32" and spec["input_shape"] == [1, MAX_LENGTH]
    assert spec["vocab_file"] == conv.VOCAB and spec["vocab_id_offset"] == 0
    assert spec["vocab_size"] == len(VOCAB)
    assert len(spec["steps"]) >= 6


def _spec_words(spec: dict, normalized: str) -> list[str]:
    """A port of the spec's split rule, as an app would write it."""
    ranges = spec["own_word_code_points"]

    def own(char: str) -> bool:
        return any(lo <= ord(char) <= hi for lo, hi in ranges) or \
            unicodedata.category(char).startswith(spec["own_word_category_prefix"])

    words, current = [], ""
    for char in normalized:
        if char in spec["whitespace"] or own(char):
            words += [current] if current else []
            words += [] if char in spec["whitespace"] else [char]
            current = ""
        else:
            current += char
    return words + ([current] if current else [])


def test_the_spec_states_the_rules_the_tokenizer_applies(release):
    """An app written from tokenizer.json splits and deletes exactly as
    models/wordpiece.py does (every 7th code point; every deleted one)."""
    spec = _spec(release["dir"])
    samples = [f"a{chr(c)}b" for c in range(0, 0x110000, 7) if not 0xD800 <= c <= 0xDFFF]
    assert [s for s in samples if _spec_words(spec, s) != wordpiece.words_py(s)] == []
    deleted = [chr(c) for lo, hi in spec["deleted_code_points"] for c in range(lo, hi + 1)]
    assert len(deleted) > 4096
    assert [c for c in deleted if wordpiece.normalize_py(f"a{c}b") != "ab"] == []
    assert wordpiece.normalize_py("a<br />b") == "a b"


def test_cli_prints_a_probability_per_review_for_a_wordpiece_folder(release, monkeypatch, capsys):
    texts = release["texts"][:5] + HARD_TEXTS
    monkeypatch.setattr(sys, "stdin", io.StringIO("".join(json.dumps(t) + "\n" for t in texts)))
    assert mobile.main([f"--model_dir={release['dir']}", "--variant=int8"]) == 0
    got = [json.loads(line)[contract.OUTPUT_KEY] for line in capsys.readouterr().out.splitlines()]
    expected = MobileClassifier(release["dir"], "int8").probabilities(texts)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6)


def test_a_tokenizer_json_of_unknown_kind_is_refused_naming_the_file(release, tmp_path):
    folder = _copy(release, tmp_path)
    (folder / conv.TOKENIZER).write_text(json.dumps({**_spec(folder), "kind": "sentencepiece"}))
    with pytest.raises(MobileLoadError) as error:
        MobileClassifier(folder, "float32")
    assert "\n" not in str(error.value)
    assert str(error.value).startswith(f"{folder / conv.TOKENIZER}: tokenizer kind "
                                       "'sentencepiece' is not one this runner implements")
    assert mobile.main([f"--model_dir={folder}"]) == 1


@pytest.mark.parametrize(("key", "value", "message"), [
    ("tokenizer_version", 2, "wordpiece tokenizer_version 2; this runner implements version 1"),
    ("max_bytes_per_word", 200, "max_bytes_per_word 200; this runner implements 100"),
    ("head", 0, "head 0; this runner implements 7"),
])
def test_a_wordpiece_spec_this_runner_does_not_implement_is_refused(release, tmp_path, key,
                                                                    value, message):
    folder = _copy(release, tmp_path)
    (folder / conv.TOKENIZER).write_text(json.dumps({**_spec(folder), key: value}))
    with pytest.raises(MobileLoadError, match=r"tokenizer\.json: ") as error:
        MobileClassifier(folder, "float32")
    assert message in str(error.value)


def test_a_vocabulary_that_is_not_the_models_is_refused(release, tmp_path):
    folder = _copy(release, tmp_path)
    swapped = list(VOCAB)
    good, bad = swapped.index("good"), swapped.index("bad")
    swapped[good], swapped[bad] = swapped[bad], swapped[good]
    (folder / conv.VOCAB).write_text("".join(f"{t}\n" for t in swapped))
    with pytest.raises(MobileLoadError, match=r"vocab\.txt: sha256 differs"):
        MobileClassifier(folder, "float32")
    (folder / conv.MANIFEST).unlink()  # the vocabulary packed into the model still tells
    with pytest.raises(MobileLoadError, match=r"vocab\.txt does not match .*model_float32"):
        MobileClassifier(folder, "float32")
    (folder / conv.VOCAB).write_text("".join(f"{t}\n" for t in VOCAB[:-1]))
    with pytest.raises(MobileLoadError, match=r"vocab\.txt: 30521 tokens, .*tokenizer\.json "
                                              r"says 30522"):
        MobileClassifier(folder, "float32")


def test_a_manifest_of_another_tokenizer_kind_is_refused(release, tmp_path):
    folder = _copy(release, tmp_path)
    manifest = json.loads((folder / conv.MANIFEST).read_text())
    del manifest["tokenizer_kind"]  # a word-tokenizer manifest
    (folder / conv.MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(MobileLoadError, match=r"tokenizer\.json: a wordpiece tokenizer, "
                                              r".*manifest\.json says words"):
        MobileClassifier(folder, "float32")


def test_the_word_tokenizer_rejects_a_wordpiece_spec_naming_the_file(release):
    with pytest.raises(MobileLoadError, match=r"tokenizer\.json: a 'wordpiece' tokenizer, not "
                                              "the word tokenizer"):
        mobile.MobileTokenizer.from_files(release["dir"] / conv.TOKENIZER,
                                          release["dir"] / conv.VOCAB)


def test_side_files_refuse_an_unknown_tokenizer():
    with pytest.raises(ValueError, match="tokenizer 'bpe'"):
        conv.side_files(VOCAB, MAX_LENGTH, 1, "bpe")


def test_the_attention_encoders_ship_no_int8_variant_the_cnn_all_four():
    """Integer activations through layer norms, GELUs and softmaxes flipped
    12% of the fine-tuned MiniLM's decisions and 2.3% of the pre-trained
    transformer's: their small file is dynamic_range (int8 weights, float
    activations)."""
    assert INT8_TFLITE == {"cnn": True, "transformer": False, "minilm": False}
    assert [v.name for v in conv.variants_for(int8=False)] == [
        "float32", "dynamic_range", "float16"]
    assert [v.name for v in conv.variants_for(int8=True)] == list(VARIANTS)

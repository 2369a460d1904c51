"""The phone's tokenizer equals the Transform graph's, id for id.

Three implementations of models/text.py's rules must agree: `tokenize_tf` (models/text_tf.py) in
the Transform graph (RE2, tf.strings), `text.tokenize_py`/`text.ids_py`, and
serving/mobile.py's `MobileTokenizer`, which knows only the shipped
tokenizer.json and vocab.txt. Checked on every Unicode code point, on the
inputs phones get wrong (HTML, emoji, control characters, 1 MB), and on real
reviews when IMDB_DATA points at the dataset.
"""

from __future__ import annotations

import itertools
import json
import random

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_transform as tft
import tensorflow_transform.beam as tft_beam

from components.imdb_example_gen import reader
from components.tflite_converter import convert as conv
from models import features, text
from models.preprocessing import preprocessing_fn
from models.text_tf import tokenize_tf
from serving.mobile import MobileLoadError, MobileTokenizer

TOKEN_IDS = features.transformed_name(features.TOKEN_IDS)
MAX_LENGTH = 40
RAW_SPEC = {
    features.TEXT: tf.io.FixedLenFeature([], tf.string),
    features.LABEL: tf.io.FixedLenFeature([], tf.int64),
    features.MOVIE_ID: tf.io.FixedLenFeature([], tf.string),
}
TRAIN_TEXTS = [
    "A great film, great acting!<br /><br />I didn't like the ending.",
    "Amélie is a café film; the café is in Paris. Don’t miss it 10/10",
    "Ужасный фильм. 映画はひどい。 Terrible, terrible plot…",
    "Worst movie ever 😡😡 — the plot (if any) was DULL, dull, dull.",
]
# The inputs a phone sees that a test corpus rarely has.
HARD_TEXTS = {
    "empty": "",
    "whitespace only": " \t\n\r\x0b\x0c\u00a0\u2003\u3000 ",
    "html": "<p>GREAT</p><br/>film<a href='x'>link</a> 3 < 4 and 5 > 2 <unclosed",
    "punctuation": "great!!!film???(acting)...\"dull\"--'quoted' it's",
    "accents and case": "AMÉLIE Amélie amélie CAFÉ École ÉCOLE İstanbul straße STRASSE",
    "non-latin": "Ужасный ФИЛЬМ 映画はひどい。 فيلم رائع नमस्ते ΟΔΟΣ ὅδος",
    "emoji": "great😀film 👍🏽👍 ❤️ a‍b 🇫🇷 :-)",
    "control characters": "great\x00film\x01\x02\x1b[31mred\x7f\x85\u200b\u200d\ufeffdull",
    "lone combining marks": "e\u0301 \u0301great \u20dd",
    "typographic apostrophes": "don’t ‘quoted’ “double” it's 'single'",
}


def _transform_ids(output: tft.TFTransformOutput, texts: list[str]) -> np.ndarray:
    layer = output.transform_features_layer()
    result = layer({features.TEXT: tf.constant([t.encode() for t in texts])})
    return result[TOKEN_IDS].numpy()


@pytest.fixture(scope="module")
def transform_output(tmp_path_factory):
    """A real Transform output whose vocabulary holds accented, non-Latin and
    capitalised-in-raw-text tokens, and the release files written from it."""
    temp = tmp_path_factory.mktemp("parity")
    rows = [{features.TEXT: t.encode(), features.LABEL: i % 2, features.MOVIE_ID: b"tt1"}
            for i, t in enumerate(TRAIN_TEXTS)]
    config = {"vocab_size": 40, "num_oov_buckets": 1, "max_length": MAX_LENGTH}
    with tft_beam.Context(temp_dir=str(temp / "tmp"), force_tf_compat_v1=False):
        _, transform_fn = ((rows, tft.DatasetMetadata.from_feature_spec(RAW_SPEC))
                           | tft_beam.AnalyzeAndTransformDataset(
                               lambda inputs: preprocessing_fn(inputs, config),
                               output_record_batches=False))
        _ = transform_fn | tft_beam.WriteTransformFn(str(temp / "out"))
    output = tft.TFTransformOutput(str(temp / "out"))
    vocab = [t.decode() for t in output.vocabulary_by_name(text.VOCAB_NAME)]
    release = temp / "release"
    release.mkdir()
    for name, payload in conv.side_files(vocab, MAX_LENGTH, 1).items():
        (release / name).write_bytes(payload)
    return output, vocab, release


@pytest.fixture(scope="module")
def mobile(transform_output):
    _, _, release = transform_output
    return MobileTokenizer.from_files(release / conv.TOKENIZER, release / conv.VOCAB)


def test_every_code_point_is_split_the_same_by_tf_python_and_the_mobile_tokenizer(mobile):
    """RE2 and Python's re must read the delimiter the same way for all of
    Unicode; an upper-case ASCII neighbour also checks the lower-casing."""
    samples = [f"xA{chr(c)}Bx" for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF]
    graph = tokenize_tf(tf.constant([s.encode() for s in samples])).to_list()
    mismatches = [s for s, g in zip(samples, graph, strict=True)
                  if [t.decode() for t in g] != text.tokenize_py(s)]
    assert mismatches == []
    assert all(mobile.tokens(s) == text.tokenize_py(s) for s in samples[::97])


@pytest.mark.parametrize("name", sorted(HARD_TEXTS))
def test_hard_input_gets_the_transform_graphs_ids_on_the_phone(name, transform_output, mobile):
    output, vocab, _ = transform_output
    review = HARD_TEXTS[name]
    expected = _transform_ids(output, [review])[0]
    lookup = {t: i for i, t in enumerate(vocab)}
    np.testing.assert_array_equal(mobile.ids(review), expected)
    np.testing.assert_array_equal(text.ids_py(review, lookup, MAX_LENGTH), expected)


def test_a_1mb_review_is_truncated_to_the_same_ids(transform_output, mobile):
    output, _, _ = transform_output
    rng = random.Random(0)
    pieces = list(itertools.chain(TRAIN_TEXTS, HARD_TEXTS.values()))
    review = ""
    while len(review.encode()) < 1_000_000:
        review += rng.choice(pieces) + rng.choice([" ", "<br />", "\n", "", "!"])
    expected = _transform_ids(output, [review])[0]
    np.testing.assert_array_equal(mobile.ids(review), expected)
    assert (expected != text.PAD_ID).all()  # long enough to fill every position


def test_known_words_keep_their_ids_whatever_their_ascii_case(transform_output, mobile):
    output, vocab, _ = transform_output
    ids = _transform_ids(output, ["GREAT Great great gReAt", "Amélie AMéLIE"])
    assert len(set(ids[0][:4])) == 1 and ids[0][0] != text.first_oov_id(len(vocab))
    # ASCII-only lower-casing: "É" keeps its case, so AMéLIE == amélie, not AMÉLIE.
    assert ids[1][0] == ids[1][1]
    np.testing.assert_array_equal(
        [mobile.ids(t) for t in ["GREAT Great great gReAt", "Amélie AMéLIE"]], ids)


def test_transform_tokens_equal_python_tokens_on_real_reviews(dev_archive):
    """Real reviews: HTML breaks, quotes, accents, the odd non-Latin word."""
    reviews = [r.text for r in itertools.islice(
        (r for r in reader.read_reviews(dev_archive, include_test=False, include_unsup=True)
         if isinstance(r, reader.Review)), 3000)]
    graph = tokenize_tf(tf.constant([r.encode() for r in reviews])).to_list()
    differing = sum([t.decode() for t in g] != text.tokenize_py(r)
                    for r, g in zip(reviews, graph, strict=True))
    assert differing == 0
    assert any(not r.isascii() for r in reviews)  # the sample does exercise non-ASCII


def test_tokenizer_json_describes_the_rules_and_rejects_several_oov_buckets(transform_output):
    _, _, release = transform_output
    spec = json.loads((release / conv.TOKENIZER).read_text())
    assert spec["delimiter_regex"] == text.DELIMITER
    assert spec["max_length"] == MAX_LENGTH and spec["input_shape"] == [1, MAX_LENGTH]
    with pytest.raises(ValueError, match="OOV buckets"):
        text.tokenizer_spec(MAX_LENGTH, conv.VOCAB, num_oov_buckets=3)
    with pytest.raises(ValueError, match="1 OOV bucket"):
        text.lookup_ids(["a"], {"a": 0}, 4, num_oov_buckets=2)


def test_the_mobile_tokenizer_refuses_a_spec_it_does_not_implement(transform_output, tmp_path):
    _, _, release = transform_output
    spec = json.loads((release / conv.TOKENIZER).read_text())
    (tmp_path / "tokenizer.json").write_text(json.dumps({**spec, "lowercase": "unicode"}))
    with pytest.raises(MobileLoadError, match=r"tokenizer\.json"):
        MobileTokenizer.from_files(tmp_path / "tokenizer.json", release / conv.VOCAB)
    (tmp_path / "vocab.txt").write_text("great\n\nfilm\n")
    with pytest.raises(MobileLoadError, match=r"vocab\.txt: line 2"):
        MobileTokenizer.from_files(release / conv.TOKENIZER, tmp_path / "vocab.txt")


def test_mediapipe_vocabulary_lists_case_variants_under_one_id():
    lines = text.mediapipe_vocab_lines(["great", "don't", "10", "Amélie", "GREAT"])
    assert lines[0] == f"{text.PAD_TOKEN} {text.PAD_ID}"
    assert lines[-1] == f"{text.UNKNOWN_TOKEN} {text.first_oov_id(5)}"
    pairs = dict(line.rsplit(" ", 1) for line in lines)
    assert pairs["great"] == pairs["Great"] == "1"
    assert pairs["GREAT"] == "5"  # a vocabulary entry keeps its own id
    assert pairs["Don't"] == pairs["DON'T"] == "2"
    assert pairs["AMéLIE"] == "4"  # ASCII letters only, as the lower-casing
    assert len(pairs) == len(lines)  # no token listed twice


def test_the_serving_demo_model_tokenises_as_the_pipeline_does(tmp_path):
    """serving/demo_model.py (every serving test and the load bench) reads
    text with the Transform graph's tokenizer: its text signature scores each
    review exactly as its ids signature scores text.ids_py's ids."""
    from serving.demo_model import build_demo_model, demo_vocabulary

    max_length, vocab_size = 24, 40
    loaded = tf.saved_model.load(build_demo_model(str(tmp_path / "1"), max_length=max_length,
                                                  vocab_size=vocab_size))
    vocab = {word: i for i, word in enumerate(demo_vocabulary(vocab_size))}
    reviews = [*TRAIN_TEXTS, *HARD_TEXTS.values(), "GOOD film!!!<br />BAD? w3,w4;w5 Great."]
    ids = np.array([text.ids_py(r, vocab, max_length) for r in reviews], np.int32)
    from_text = loaded.signatures["serving_text"](text=tf.constant([r.encode() for r in reviews]))
    from_ids = loaded.signatures["token_ids"](token_ids=tf.constant(ids))
    np.testing.assert_array_equal(from_text["probability"].numpy(),
                                  from_ids["probability"].numpy())
    assert len(set(map(tuple, ids))) > len(reviews) // 2  # the reviews differ in ids

"""Text normalisation and tokenisation rules, written once.

`preprocessing_fn` applies them with tf.strings (inside the Transform graph,
so serving sees exactly what training saw); `tokenize_py`/`lookup_ids` apply
the same rules in plain Python for TF-free clients (the TFLite mobile runner),
and the tokenizer spec and MediaPipe vocabulary shipped with the TFLite model
are generated from these constants. Tests check all paths agree id for id.

The rules are chosen so that three engines compute the same tokens: RE2 in the
Transform graph, Python's `re`, and MediaPipe's RegexTokenizer (RE2 again, but
it can only split on a delimiter regex and look tokens up case-sensitively):

- lower-casing is ASCII only. `tf.strings.lower(encoding="utf-8")` goes through
  ICU, which cuts a string at its first NUL and follows an older Unicode than
  Python's `str.lower`; ASCII-only lower-casing is exact everywhere, and
  MediaPipe gets it back through case variants in its vocabulary file.
- a token is a maximal run of characters outside `PUNCTUATION`, an explicit
  list of code-point ranges: Unicode property classes (`\\pL`) differ between
  RE2's and Python's Unicode versions by thousands of code points, ranges do
  not. Punctuation separates tokens and is dropped: MediaPipe's tokenizer
  drops delimiters, so a "!" token could not be reproduced on the phone.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Any

__all__ = ["HTML_TAG", "PUNCTUATION", "DELIMITER", "PAD_ID", "ID_OFFSET", "VOCAB_NAME",
           "PAD_TOKEN", "UNKNOWN_TOKEN", "TOKENIZER_VERSION",
           "first_oov_id", "vocab_total", "normalize_py", "tokenize_py", "lookup_ids",
           "ids_py", "tokenizer_spec", "case_variants", "mediapipe_vocab_lines"]

# The raw reviews contain HTML break tags (`<br /><br />`) and other markup:
# they carry no sentiment, so a tag separates tokens like a space.
HTML_TAG = r"<[^>]*>"
# Characters that separate tokens, as code-point ranges written so that RE2
# and Python's `re` read them identically (`\xhh` escapes for U+0000..U+00FF,
# literal characters above). Everything else, including letters of every
# script, digits, the apostrophe of "don't" and the typographic one of
# "don\u2019t", belongs to a token.
_SEPARATOR_RANGES: tuple[tuple[int, int], ...] = (
    (0x2000, 0x2018), (0x201A, 0x206F),  # general punctuation, spaces, quotes, dashes, ZWJ
    (0x2190, 0x21FF),                    # arrows
    (0x2500, 0x27BF),                    # box drawing, shapes, misc symbols, dingbats
    (0x2E00, 0x2E7F),                    # supplemental punctuation
    (0x3000, 0x3003), (0x3008, 0x3011),  # CJK spaces, commas, full stops, brackets
    (0xFE00, 0xFE0F),                    # variation selectors (emoji presentation)
    (0xFEFF, 0xFEFF),                    # byte-order mark
    (0xFF01, 0xFF0F),                    # full-width punctuation
    (0x1F000, 0x1FAFF),                  # emoji and pictographs
)
PUNCTUATION = (
    r"[\x00-\x26\x28-\x2f\x3a-\x40\x5b-\x60\x7b-\xbf\xd7\xf7"  # ASCII and Latin-1 non-letters
    + "".join(f"{chr(lo)}-{chr(hi)}" if lo != hi else chr(lo) for lo, hi in _SEPARATOR_RANGES)
    + "]")
#: What separates tokens: HTML tags and runs of punctuation, spaces and control
#: characters. MediaPipe's RegexTokenizer splits on exactly this.
DELIMITER = f"(?:{HTML_TAG}|{PUNCTUATION})+"
#: Bumped whenever the rules above change: a vocabulary only fits its version.
TOKENIZER_VERSION = 2

# The token-id scheme, shared by Transform, the models, TFLite and mobile apps:
#   0                                   padding
#   1 .. V                              vocabulary entry i (0-based) -> i + ID_OFFSET
#   V + 1 .. V + num_oov_buckets        out-of-vocabulary buckets
#: Token id of padding.
PAD_ID = 0
#: Vocabulary ids are shifted by this much so that 0 stays free for padding.
ID_OFFSET = 1
#: Name of the Transform vocabulary (its file name in the transform graph).
VOCAB_NAME = "tokens"
#: Padding and out-of-vocabulary entries of the MediaPipe / Task Library vocabulary.
PAD_TOKEN, UNKNOWN_TOKEN = "<PAD>", "<UNKNOWN>"


def first_oov_id(vocab_size: int) -> int:
    """Id of the first out-of-vocabulary bucket for a vocabulary of `vocab_size` entries."""
    return vocab_size + ID_OFFSET


def vocab_total(vocab_size: int, num_oov_buckets: int) -> int:
    """Number of distinct ids (padding, vocabulary, OOV buckets): the embedding rows."""
    return first_oov_id(vocab_size) + num_oov_buckets


_DELIMITER = re.compile(DELIMITER)
_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")
_ASCII_UPPER = str.maketrans("abcdefghijklmnopqrstuvwxyz", "ABCDEFGHIJKLMNOPQRSTUVWXYZ")


def normalize_py(text: str) -> str:
    """ASCII lower-casing, as `tf.strings.lower` without an encoding does."""
    return text.translate(_ASCII_LOWER)


def tokenize_py(text: str) -> list[str]:
    """The tokens `preprocessing_fn` computes, in plain Python."""
    return [token for token in _DELIMITER.split(normalize_py(text)) if token]


def lookup_ids(tokens: Sequence[str], vocab: dict[str, int], max_length: int,
               num_oov_buckets: int = 1) -> list[int]:
    """Token ids as Transform computes them: vocab index + ID_OFFSET, out of
    vocabulary -> first_oov_id(len(vocab)), truncated at the end then padded
    with PAD_ID.

    Several OOV buckets hash tokens with FarmHash Fingerprint64 in Transform;
    no mobile runtime ships that hash, so only one bucket is supported here.
    """
    if num_oov_buckets != 1:
        raise ValueError(f"the mobile tokenizer supports 1 OOV bucket, not {num_oov_buckets}: "
                         "train with --num_oov_buckets=1 to ship a model to phones")
    oov = first_oov_id(len(vocab))
    ids = [vocab[token] + ID_OFFSET if token in vocab else oov
           for token in tokens[:max_length]]
    return ids + [PAD_ID] * (max_length - len(ids))


def ids_py(text: str, vocab: dict[str, int], max_length: int,
           num_oov_buckets: int = 1) -> list[int]:
    """Text -> the model's input row, exactly as the Transform graph computes it."""
    # Only the first max_length tokens matter; a 1 MB review is still split in
    # full (a lazy finditer would be faster, but this is the reference).
    return lookup_ids(tokenize_py(text), vocab, max_length, num_oov_buckets)


def tokenizer_spec(max_length: int, vocab_file: str, num_oov_buckets: int,
                   mediapipe_vocab_file: str | None = None) -> dict[str, Any]:
    """What a mobile app needs to turn text into the model's int32 input."""
    if num_oov_buckets != 1:
        raise ValueError(f"a model with {num_oov_buckets} OOV buckets cannot be tokenized on "
                         "phones (Transform hashes OOV tokens with FarmHash); use 1 bucket")
    spec: dict[str, Any] = {
        "tokenizer_version": TOKENIZER_VERSION,
        "lowercase": "ascii",
        "delimiter_regex": DELIMITER,
        "regex_dialect": "RE2 / Python re: both read it the same way",
        "steps": ["replace A-Z with a-z (ASCII only; other letters keep their case)",
                  "split on delimiter_regex, drop the delimiters and empty tokens",
                  "look each token up in vocab_file (line i -> id i + vocab_id_offset); "
                  "not found -> oov_id",
                  "keep the first max_length ids, pad with pad_id to max_length"],
        "vocab_file": vocab_file,
        "vocab_id_offset": ID_OFFSET,
        "pad_id": PAD_ID,
        "num_oov_buckets": num_oov_buckets,
        "oov_id": "number of lines of vocab_file + 1",
        "max_length": max_length,
        "truncate": "end",
        "input_dtype": "int32",
        "input_shape": [1, max_length],
    }
    if mediapipe_vocab_file is not None:
        spec["mediapipe_vocab_file"] = mediapipe_vocab_file
    return spec


def case_variants(token: str) -> list[str]:
    """The spellings of a lower-cased token that raw text most often has:
    as is, Capitalised, UPPER (ASCII letters only, like the lower-casing).

    MediaPipe's tokenizer cannot lower-case, so its vocabulary lists these
    variants under one id; mixed case ("McDonald") stays out of vocabulary.
    """
    upper = token.translate(_ASCII_UPPER)
    variants = [token, upper[:1] + token[1:], upper]
    return list(dict.fromkeys(variants))


def mediapipe_vocab_lines(vocab: Iterable[str]) -> list[str]:
    """The `token id` lines of a MediaPipe / Task Library RegexTokenizer
    vocabulary: `<PAD> 0`, each token's case variants with its id, then
    `<UNKNOWN> first_oov_id`. No `<START>`: the model has no start token.

    A variant that is itself a vocabulary entry keeps its own id (a token
    with upper-case non-ASCII letters can be both).
    """
    tokens = list(vocab)
    ids: dict[str, int] = {token: index + ID_OFFSET for index, token in enumerate(tokens)}
    lines = [f"{PAD_TOKEN} {PAD_ID}"]
    seen = set()
    for token in tokens:
        for variant in case_variants(token):
            if variant in seen or (variant != token and variant in ids):
                continue
            seen.add(variant)
            lines.append(f"{variant} {ids[token]}")
    lines.append(f"{UNKNOWN_TOKEN} {first_oov_id(len(tokens))}")
    return lines

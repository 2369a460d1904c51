"""WordPiece tokenisation for the pre-trained encoder (BERT uncased), written once.

`tokenize_tf` runs inside the Transform graph with tensorflow-text's ops (so
serving sees exactly what training saw); `ids_py` is its plain-Python twin
for TF-free apps and the tests, which check the two agree id for id.

The rules are BERT's uncased ones, as `tensorflow_text.BertTokenizer`
applies them (written with its public ops: its BasicTokenizer is not
exported): case folding, accents stripped (NFD, marks dropped), control
characters as spaces, words split at whitespace, every punctuation and CJK
character its own word, then greedy longest-match WordPiece with `##`
continuations (a word with no match, or over 100 bytes, is `[UNK]`). Two
additions for reviews:

- HTML tags (`<br />`) become spaces first: BERT would read "<", "br", "/",
  ">" as four words of every paragraph break.
- A long review keeps its head and its tail (a quarter of the budget from
  the start, the rest from the end), not only its beginning: reviews often
  end with the verdict (Sun et al. 2019, "How to Fine-Tune BERT for Text
  Classification", found head+tail best on IMDb).

Rows are `[CLS] pieces [SEP]` padded with `[PAD]` (id 0), so the models'
"id 0 is padding" rule holds here too.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from typing import Any

from models import text
from models.config import WORDPIECE_MIN_LENGTH as MIN_LENGTH

__all__ = ["CLS", "SEP", "PAD", "UNK", "SUFFIX", "MAX_BYTES_PER_WORD", "MIN_LENGTH",
           "TOKENIZER_VERSION", "WHITESPACE", "ASCII_PUNCTUATION", "CJK_RANGES", "IGNORABLE",
           "OWN_WORD_RE2", "DELIMITER_RE2",
           "head_tail", "special_ids", "register_ops", "tokenize_tf", "normalize_py", "words_py",
           "wordpiece_py", "ids_py"]

CLS, SEP, PAD, UNK = "[CLS]", "[SEP]", "[PAD]", "[UNK]"
#: Prefix of a word piece that continues a word.
SUFFIX = "##"
#: Longer words are one [UNK] (BERT's 100, counted in UTF-8 bytes as tensorflow-text does).
MAX_BYTES_PER_WORD = 100
#: Bumped whenever the rules of this module change: apps that port them
#: (serving/mobile.py) refuse a version they do not implement rather than
#: tokenise differently.
TOKENIZER_VERSION = 1

# What tensorflow-text's BasicTokenizer splits on: RE2's \s is ASCII
# whitespace only; every punctuation character and CJK ideograph is a word.
# Public because they are the rules: the tokenizer.json spec for apps is
# written from them (components/tflite_converter/wordpiece_spec.py).
WHITESPACE = frozenset("\t\n\f\r ")
ASCII_PUNCTUATION = frozenset(chr(c) for lo, hi in ((0x21, 0x2F), (0x3A, 0x40), (0x5B, 0x60),
                                                    (0x7B, 0x7E)) for c in range(lo, hi + 1))
CJK_RANGES = ((0x4E00, 0x9FFF), (0x3400, 0x4DBF), (0x20000, 0x2A6DF), (0x2A700, 0x2B73F),
              (0x2B740, 0x2B81F), (0x2B820, 0x2CEAF), (0xF900, 0xFAFF), (0x2F800, 0x2FA1F))
_HTML_TAG = re.compile(text.HTML_TAG)
# Unicode's Default_Ignorable_Code_Point: ICU's NFKC_Casefold (tensorflow-
# text's case_fold_utf8) deletes these (zero-width space, joiners, soft
# hyphen, variation selectors, ...), so "zero\u200bwidth" is one word.
IGNORABLE = re.compile(
    "[\u00ad\u034f\u061c\u115f\u1160\u17b4\u17b5\u180b-\u180f\u200b-\u200f"
    "\u202a-\u202e\u2060-\u206f\u3164\ufe00-\ufe0f\ufeff\uffa0\ufff0-\ufff8"
    "\U0001bca0-\U0001bca3\U0001d173-\U0001d17a\U000e0000-\U000e0fff]")
# The same rules in RE2 for tensorflow-text's regex_split (as its
# BasicTokenizer writes them): split at whitespace and at words of their
# own, keep the latter.
OWN_WORD_RE2 = "|".join(
    [r"[!-/]", r"[:-@]", r"[\[-`]", r"[{-~]", r"[\p{P}]",
     *(f"[\\x{{{lo:X}}}-\\x{{{hi:X}}}]" for lo, hi in CJK_RANGES)])
DELIMITER_RE2 = r"\s+|" + OWN_WORD_RE2


def head_tail(max_length: int) -> tuple[int, int]:
    """How many pieces a long review keeps from its start and from its end."""
    if max_length < MIN_LENGTH:
        raise ValueError(f"max_length={max_length}: WordPiece rows need at least "
                         f"{MIN_LENGTH} positions ([CLS], a piece, [SEP])")
    budget = max_length - 2
    return budget // 4, budget - budget // 4


def special_ids(vocab: Sequence[str]) -> dict[str, int]:
    """Ids of [CLS], [SEP], [PAD], [UNK]; [PAD] must be id 0 (the padding id)."""
    index = {token: i for i, token in enumerate(vocab)}
    missing = [t for t in (CLS, SEP, PAD, UNK) if t not in index]
    if missing:
        raise ValueError(f"the WordPiece vocabulary lacks {', '.join(missing)}")
    if index[PAD] != text.PAD_ID:
        raise ValueError(f"the WordPiece vocabulary has {PAD} at id {index[PAD]}, not "
                         f"{text.PAD_ID}")
    return {t: index[t] for t in (CLS, SEP, PAD, UNK)}


def register_ops() -> None:
    """Makes tensorflow-text's ops known to TensorFlow, which a process must
    do before it loads a graph that tokenises with them (the transform graph
    of a WordPiece model, and every model exported with it inside)."""
    import tensorflow_text  # noqa: F401  (the import registers the ops)


def tokenize_tf(raw_text: Any, vocab: Sequence[str], max_length: int) -> Any:
    """Strings [batch] or [batch, 1] -> int64 ids [batch, max_length].

    TensorFlow is imported here, not with the module: TF-free apps (the
    mobile runner) use the Python twin below."""
    import tensorflow as tf
    import tensorflow_text as tf_text

    ids = special_ids(vocab)
    head, tail = head_tail(max_length)
    strings = tf.strings.regex_replace(tf.reshape(raw_text, [-1]), text.HTML_TAG, " ")
    folded = tf_text.normalize_utf8(tf_text.case_fold_utf8(strings), "NFD")
    cleaned = tf.strings.regex_replace(tf.strings.regex_replace(folded, r"\p{Mn}", ""),
                                       r"\p{Cc}|\p{Cf}", " ")
    words = tf_text.regex_split(cleaned, DELIMITER_RE2, OWN_WORD_RE2)
    pieces = tf_text.FastWordpieceTokenizer(
        vocab=list(vocab), suffix_indicator=SUFFIX, max_bytes_per_word=MAX_BYTES_PER_WORD,
        token_out_type=tf.int64, unknown_token=UNK, no_pretokenization=True,
    ).tokenize(words).merge_dims(1, 2)
    count = pieces.row_lengths()
    position = tf.ragged.range(count)
    kept = tf.ragged.boolean_mask(
        pieces, (position < head) | (position >= tf.expand_dims(count - tail, 1)))
    rows = tf.shape(count, out_type=tf.int64)[0]
    cls = tf.RaggedTensor.from_tensor(tf.fill([rows, 1], tf.constant(ids[CLS], tf.int64)))
    sep = tf.RaggedTensor.from_tensor(tf.fill([rows, 1], tf.constant(ids[SEP], tf.int64)))
    framed = tf.concat([cls, kept, sep], axis=1)
    return framed.to_tensor(default_value=ids[PAD], shape=[None, max_length])


def normalize_py(raw: str) -> str:
    """HTML tags to spaces, then BERT's uncased normalisation: case folding
    (ICU's NFKC_Casefold: default-ignorable characters deleted, then
    NFKC(casefold(NFKC))), accents
    stripped, control and format characters to spaces."""
    folded = unicodedata.normalize("NFKC", unicodedata.normalize(
        "NFKC", IGNORABLE.sub("", _HTML_TAG.sub(" ", raw))).casefold())
    stripped = "".join(c for c in unicodedata.normalize("NFD", folded)
                       if unicodedata.category(c) != "Mn")
    return "".join(" " if unicodedata.category(c) in ("Cc", "Cf") else c for c in stripped)


def _is_word_on_its_own(char: str) -> bool:
    code = ord(char)
    return (char in ASCII_PUNCTUATION or unicodedata.category(char).startswith("P")
            or any(lo <= code <= hi for lo, hi in CJK_RANGES))


def words_py(normalized: str) -> list[str]:
    """Split at whitespace; punctuation and CJK characters are words of their own."""
    words: list[str] = []
    current: list[str] = []
    for char in normalized:
        if char in WHITESPACE or _is_word_on_its_own(char):
            if current:
                words.append("".join(current))
                current = []
            if char not in WHITESPACE:
                words.append(char)
        else:
            current.append(char)
    if current:
        words.append("".join(current))
    return words


def wordpiece_py(word: str, vocab: dict[str, int]) -> list[int]:
    """Greedy longest-match-first pieces of one word; no full cover -> [UNK]."""
    if len(word.encode("utf-8")) > MAX_BYTES_PER_WORD:
        return [vocab[UNK]]
    pieces, start = [], 0
    while start < len(word):
        for end in range(len(word), start, -1):
            candidate = word[start:end] if start == 0 else SUFFIX + word[start:end]
            if candidate in vocab:
                pieces.append(vocab[candidate])
                start = end
                break
        else:
            return [vocab[UNK]]
    return pieces


def ids_py(raw: str, vocab: dict[str, int], max_length: int) -> list[int]:
    """Text -> the model's input row, exactly as `tokenize_tf` computes it."""
    head, tail = head_tail(max_length)
    pieces = [i for word in words_py(normalize_py(raw)) for i in wordpiece_py(word, vocab)]
    if len(pieces) > head + tail:
        pieces = pieces[:head] + pieces[len(pieces) - tail:]
    row = [vocab[CLS], *pieces, vocab[SEP]]
    return row + [vocab[PAD]] * (max_length - len(row))

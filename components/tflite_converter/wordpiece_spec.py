"""tokenizer.json of a WordPiece model: models/wordpiece.py's rules, as data.

What an app needs to turn a review into the model's int32 input without
TensorFlow, written from the constants of models/wordpiece.py (each fact
stays there; this module only lays them out). serving/mobile.py reads the
file and tokenises with `wordpiece.ids_py`; a phone ports the "steps".

The spec is built here and not in models/ because the Trainer's code
fingerprint covers models/: describing the rules must not re-train a model.
Plain Python (no TensorFlow): the TFLite check and the tests import it.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from models import text, wordpiece

__all__ = ["KIND", "tokenizer_spec"]

#: tokenizer.json's "kind" for this tokenizer (the word tokenizer's file has none).
KIND = "wordpiece"


def _ranges(code_points: Iterable[int]) -> list[list[int]]:
    """Sorted code points as inclusive [first, last] runs."""
    runs: list[list[int]] = []
    for code in sorted(code_points):
        if runs and runs[-1][1] == code - 1:
            runs[-1][1] = code
        else:
            runs.append([code, code])
    return runs


def _class_code_points(pattern: str) -> Iterator[int]:
    """The code points of a regex character class of literal characters and `a-b` ranges."""
    if not (pattern.startswith("[") and pattern.endswith("]")):
        raise ValueError(f"not a plain character class: {pattern!r}")
    body, i = pattern[1:-1], 0
    while i < len(body):
        last = i + 2 if i + 2 < len(body) and body[i + 1] == "-" else i
        yield from range(ord(body[i]), ord(body[last]) + 1)
        i = last + 1


def tokenizer_spec(vocab: Sequence[str], max_length: int, vocab_file: str) -> dict[str, Any]:
    """What a mobile app needs to turn text into the model's int32 input."""
    ids = wordpiece.special_ids(vocab)
    head, tail = wordpiece.head_tail(max_length)
    # models/wordpiece.py's sets are the rules themselves; read, not copied,
    # so that a change there reaches the spec.
    own_word = _ranges([*(ord(c) for c in wordpiece.ASCII_PUNCTUATION),
                        *(c for lo, hi in wordpiece.CJK_RANGES for c in range(lo, hi + 1))])
    return {
        "kind": KIND,
        "tokenizer_version": wordpiece.TOKENIZER_VERSION,
        "html_tag_regex": text.HTML_TAG,
        "deleted_code_points": _ranges(_class_code_points(wordpiece.IGNORABLE.pattern)),
        "case_folding": "NFKC_Casefold",
        "strip_accents": "NFD, then drop general category Mn",
        "to_space_categories": ["Cc", "Cf"],
        "whitespace": "".join(sorted(wordpiece.WHITESPACE)),
        "own_word_code_points": own_word,
        "own_word_category_prefix": "P",
        "delimiter_regex_re2": wordpiece.DELIMITER_RE2,
        "own_word_regex_re2": wordpiece.OWN_WORD_RE2,
        "suffix_indicator": wordpiece.SUFFIX,
        "max_bytes_per_word": wordpiece.MAX_BYTES_PER_WORD,
        "unknown_token": wordpiece.UNK,
        "steps": [
            "replace each match of html_tag_regex with a space",
            "delete deleted_code_points (Unicode Default_Ignorable_Code_Point), then NFKC, "
            "full case folding, NFKC (ICU's NFKC_Casefold)",
            "NFD, then drop characters of general category Mn (accents)",
            "characters of a to_space_categories category -> space",
            "split into words at whitespace characters (dropped); a character in "
            "own_word_code_points or of a general category starting with "
            "own_word_category_prefix is a word of its own (the RE2 regexes say the same "
            "for a regex split that keeps own-word matches)",
            "each word -> greedy longest-match-first pieces of vocab_file (line i -> id "
            "i + vocab_id_offset), pieces after the first prefixed with suffix_indicator; "
            "a word over max_bytes_per_word UTF-8 bytes, or not covered entirely -> unk_id",
            "more than head + tail pieces: keep the first head and the last tail",
            "cls_id, the pieces, sep_id, padded with pad_id to max_length",
        ],
        "vocab_file": vocab_file,
        "vocab_id_offset": 0,
        "vocab_size": len(vocab),
        "cls_id": ids[wordpiece.CLS],
        "sep_id": ids[wordpiece.SEP],
        "pad_id": ids[wordpiece.PAD],
        "unk_id": ids[wordpiece.UNK],
        "head": head,
        "tail": tail,
        "max_length": max_length,
        "truncate": "head_tail",
        "input_dtype": "int32",
        "input_shape": [1, max_length],
    }

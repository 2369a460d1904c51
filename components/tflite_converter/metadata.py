"""TFLite metadata that MediaPipe's TextClassifier and the Task Library's
NLClassifier read, so an app loads the shipped model with no code of its own.

What is embedded, as the TFLite metadata schema (`metadata_schema.fbs`,
file identifier "M001") describes it:
- the input tensor: a RegexTokenizer process unit with the delimiter regex and
  the `token id` vocabulary (associated file of type VOCABULARY), for the word
  tokenizer. A WordPiece model gets no process unit, only its vocabulary as
  the input tensor's associated file: MediaPipe's BERT classifier wants three
  inputs (ids, mask, segment ids) and takes a one-input int32 model for a
  regex (1.2.3: SentencePiece) tokenizer model, so no process unit would make
  it run this model; the file keeps the model self-describing and lets
  serving/mobile.py check that a vocab.txt belongs to it;
- the output tensor: the label file (TENSOR_AXIS_LABELS), one line per score;
- the associated files themselves, as an uncompressed zip appended to the
  flatbuffer (a .tflite with metadata is also a valid zip file).

Why written here with `flatbuffers` and not with a metadata writer library:
mediapipe 1.2.3's writer fails on import; mediapipe 0.10.21's and
tflite-support 0.4.4's work but pin protobuf 4 / < 4 and numpy 1.x, which the
project's TensorFlow 2.21 stack (protobuf 6.33, numpy 2) cannot share. The few
tables needed are built below, field slots as in the schema, and the test
reads them back with MediaPipe itself (in its own environment).
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Sequence

import flatbuffers
from ai_edge_litert import schema_py_generated as tfl

__all__ = ["METADATA_NAME", "MIN_PARSER_VERSION", "metadata_flatbuffer", "embed_metadata",
           "associated_files", "has_metadata", "operator_names", "tensor_types"]

#: Name of the Model.metadata entry whose buffer holds the metadata flatbuffer.
METADATA_NAME = "TFLITE_METADATA"
#: RegexTokenizerOptions arrived in metadata schema 1.2.1.
MIN_PARSER_VERSION = "1.2.1"
#: Without a tokenizer process unit every table used is in the first schema.
_BASE_PARSER_VERSION = "1.0.0"
_IDENTIFIER = b"M001"
_MODEL_IDENTIFIER = b"TFL3"

# Enum values of metadata_schema.fbs.
_VOCABULARY, _TENSOR_AXIS_LABELS = 5, 2
_FEATURE_PROPERTIES = 1  # ContentProperties
_REGEX_TOKENIZER_OPTIONS = 6  # ProcessUnitOptions


def _table(builder: flatbuffers.Builder, slots: Sequence[tuple[int, str, int]],
           size: int) -> int:
    """One table: slots are (index, kind, value) with kind 'offset', 'int8' or 'uint8'."""
    builder.StartObject(size)
    for index, kind, value in slots:
        if kind == "offset":
            builder.PrependUOffsetTRelativeSlot(index, value, 0)
        elif kind == "int8":
            builder.PrependInt8Slot(index, value, 0)
        else:
            builder.PrependUint8Slot(index, value, 0)
    return int(builder.EndObject())


def _vector(builder: flatbuffers.Builder, offsets: Sequence[int]) -> int:
    builder.StartVector(4, len(offsets), 4)
    for offset in reversed(offsets):
        builder.PrependUOffsetTRelative(offset)
    return int(builder.EndVector())


def _associated_file(builder: flatbuffers.Builder, name: str, description: str,
                     file_type: int) -> int:
    name_offset = builder.CreateString(name)
    description_offset = builder.CreateString(description)
    return _table(builder, [(0, "offset", name_offset), (1, "offset", description_offset),
                            (2, "int8", file_type)], 5)


def _feature_content(builder: flatbuffers.Builder) -> int:
    properties = _table(builder, [], 0)  # FeatureProperties has no fields
    return _table(builder, [(0, "uint8", _FEATURE_PROPERTIES), (1, "offset", properties)], 3)


def metadata_flatbuffer(*, model_name: str, description: str, delimiter_regex: str | None,
                        vocab_name: str, labels_name: str, input_name: str,
                        output_name: str) -> bytes:
    """The ModelMetadata flatbuffer of a text classifier: with a
    RegexTokenizer over `vocab_name` when `delimiter_regex` is given, else
    with `vocab_name` (a WordPiece vocabulary) as the input's associated file."""
    builder = flatbuffers.Builder(1024)
    if delimiter_regex is not None:
        # Input tensor: token ids from the regex tokenizer.
        vocab_file = _associated_file(builder, vocab_name,
                                      "token id per line; case variants share an id",
                                      _VOCABULARY)
        regex = builder.CreateString(delimiter_regex)
        tokenizer = _table(builder, [(0, "offset", regex),
                                     (1, "offset", _vector(builder, [vocab_file]))], 2)
        # TensorMetadata.process_units: the tokenizer MediaPipe runs.
        vocab_slot, vocab_entry = 4, _table(builder, [(0, "uint8", _REGEX_TOKENIZER_OPTIONS),
                                                      (1, "offset", tokenizer)], 2)
    else:
        # TensorMetadata.associated_files: the vocabulary alone, no process unit.
        vocab_slot, vocab_entry = 6, _associated_file(
            builder, vocab_name, "WordPiece vocabulary: line i is token id i", _VOCABULARY)
    input_name_offset = builder.CreateString(input_name)
    input_description = builder.CreateString("int32 token ids of the review, padded with 0")
    input_content = _feature_content(builder)
    input_tensor = _table(builder, [
        (0, "offset", input_name_offset), (1, "offset", input_description),
        (3, "offset", input_content),
        (vocab_slot, "offset", _vector(builder, [vocab_entry]))], 7)
    # Output tensor: one sigmoid score per label line.
    labels_file = _associated_file(builder, labels_name, "the class the score is for",
                                   _TENSOR_AXIS_LABELS)
    output_tensor = _table(builder, [
        (0, "offset", builder.CreateString(output_name)),
        (1, "offset", builder.CreateString("probability of the label")),
        (3, "offset", _feature_content(builder)),
        (6, "offset", _vector(builder, [labels_file]))], 7)
    subgraph = _table(builder, [
        (0, "offset", builder.CreateString(model_name)),
        (2, "offset", _vector(builder, [input_tensor])),
        (3, "offset", _vector(builder, [output_tensor]))], 10)
    root = _table(builder, [
        (0, "offset", builder.CreateString(model_name)),
        (1, "offset", builder.CreateString(description)),
        (3, "offset", _vector(builder, [subgraph])),
        (7, "offset", builder.CreateString(
            _BASE_PARSER_VERSION if delimiter_regex is None else MIN_PARSER_VERSION))], 8)
    builder.Finish(root, file_identifier=_IDENTIFIER)
    return bytes(builder.Output())


def _model_with_metadata(model: bytes, metadata: bytes) -> bytes:
    if len(model) < 8 or model[4:8] != _MODEL_IDENTIFIER:
        raise ValueError("not a TFLite flatbuffer (no TFL3 identifier)")
    obj = tfl.ModelT.InitFromPackedBuf(bytearray(model), 0)
    obj.buffers = list(obj.buffers or [])
    buffer = tfl.BufferT()
    buffer.data = list(metadata)
    obj.buffers.append(buffer)
    entry = tfl.MetadataT()
    entry.name = METADATA_NAME
    entry.buffer = len(obj.buffers) - 1
    obj.metadata = [m for m in (obj.metadata or []) if _name(m.name) != METADATA_NAME]
    obj.metadata.append(entry)
    builder = flatbuffers.Builder(len(model) + len(metadata) + 1024)
    builder.Finish(obj.Pack(builder), file_identifier=_MODEL_IDENTIFIER)
    return bytes(builder.Output())


def _name(value: str | bytes | None) -> str:
    return value.decode() if isinstance(value, bytes) else (value or "")


def embed_metadata(model: bytes, *, vocab: bytes, labels: Sequence[str],
                   vocab_name: str, labels_name: str, delimiter_regex: str | None,
                   model_name: str = "text classifier",
                   input_name: str = "token_ids", output_name: str = "probability") -> bytes:
    """The model with metadata and associated files. With `delimiter_regex`
    (and MediaPipe's `token id` vocabulary) MediaPipe's TextClassifier and the
    Task Library's NLClassifier load it as is; without (a WordPiece model,
    `vocab` one token per line) the app tokenises as tokenizer.json says."""
    metadata = metadata_flatbuffer(
        model_name=model_name, description="Sentiment of a movie review: P(positive).",
        delimiter_regex=delimiter_regex, vocab_name=vocab_name, labels_name=labels_name,
        input_name=input_name, output_name=output_name)
    packed = _model_with_metadata(model, metadata)
    out = io.BytesIO()
    out.write(packed)
    # Appending to a stream that already holds the flatbuffer: zipfile writes
    # offsets from the start of the stream, as the metadata readers expect.
    with zipfile.ZipFile(out, "a", compression=zipfile.ZIP_STORED) as archive:
        archive.writestr(vocab_name, vocab)
        archive.writestr(labels_name, "".join(f"{label}\n" for label in labels))
    return out.getvalue()


def associated_files(model: bytes) -> dict[str, bytes]:
    """The files packed into a model with metadata ({} when there are none)."""
    try:
        with zipfile.ZipFile(io.BytesIO(model)) as archive:
            return {name: archive.read(name) for name in archive.namelist()}
    except zipfile.BadZipFile:
        return {}


def has_metadata(model: bytes) -> bool:
    """Whether the flatbuffer carries a TFLITE_METADATA entry."""
    obj = tfl.Model.GetRootAs(model, 0)
    return any(_name(obj.Metadata(i).Name()) == METADATA_NAME for i in range(obj.MetadataLength()))


def _enum_names(enum: type) -> dict[int, str]:
    return {value: key for key, value in vars(enum).items() if isinstance(value, int)}


def operator_names(model: bytes) -> set[str]:
    """The operators a model uses ("CUSTOM" for Flex and other non-builtin ops)."""
    obj = tfl.Model.GetRootAs(model, 0)
    names = _enum_names(tfl.BuiltinOperator)
    result = set()
    for i in range(obj.OperatorCodesLength()):
        code = obj.OperatorCodes(i)
        # Codes past 127 live in builtin_code; the deprecated byte saturates at 127.
        result.add(names[max(code.BuiltinCode(), code.DeprecatedBuiltinCode())])
    return result


def tensor_types(model: bytes) -> dict[str, int]:
    """How many tensors of each type the model's subgraphs hold."""
    obj = tfl.Model.GetRootAs(model, 0)
    names = _enum_names(tfl.TensorType)
    counts: dict[str, int] = {}
    for s in range(obj.SubgraphsLength()):
        subgraph = obj.Subgraphs(s)
        for t in range(subgraph.TensorsLength()):
            name = names[subgraph.Tensors(t).Type()]
            counts[name] = counts.get(name, 0) + 1
    return counts

"""Model hyper-parameters: typed, frozen, each field with its valid range.

`pipeline/config.py` composes these with the data, evaluation and run
settings and turns every field into a `--flag`. The `field()` helper and
`problems()` live here, in the lowest layer, so every config section checks
its values the same way: when the flags are parsed (one line naming the flag)
and when a section is built in code (`__post_init__`).

This module is deliberately not part of the Trainer's code fingerprint: the
values it defines reach the Trainer through `custom_config` (so changing a
default or adding a field still re-trains), while editing a help string does
not.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from models import text

__all__ = ["MODEL_DEFAULTS", "DEFAULT_MAX_LENGTH", "DEFAULT_NGRAM_BLEND", "DEFAULT_NGRAM_ORDER",
           "TOKENIZERS",
           "INT8_TFLITE", "WORDPIECE_MIN_LENGTH", "MINILM_POSITIONS", "MODELS",
           "PRETRAIN_REGULARISATION", "PRETRAIN_TRAIN_FIELDS", "CheckedConfig",
           "PretrainConfig", "TrainConfig", "TransformConfig", "allowed", "check", "field",
           "for_pretraining", "pretraining_settings", "problems"]

#: Model architectures `run_fn` can build: the CNN, the transformer trained
#: here (optionally masked-LM pre-trained), the packaged pre-trained MiniLM.
MODELS = ("cnn", "transformer", "minilm")
#: TrainConfig fields left unset take their model's value. The CNN's are the
#: default run's, chosen on `valid` within a 5-minute run (bench/default_run.py):
#: 2 epochs at 3e-3 with dropout 0.3 reach what 4 epochs at 1e-3 with 0.5 did.
#: Attention layers learn poorly with more dropout than BERT's 0.1. A
#: pre-trained encoder is fine-tuned briefly, at a small peak rate after a
#: warm-up (large early updates would wreck what it learned), in smaller
#: batches (it is 22M parameters), with XLA (measured 3x faster forward on 2
#: CPU cores). bfloat16 (--precision) pays on GPUs and on CPUs
#: with AVX512-BF16/AMX only: on this project's AVX2 hosts it was no faster.
MODEL_DEFAULTS: dict[str, dict[str, Any]] = {
    "cnn": {"dropout": 0.3, "learning_rate": 3e-3, "batch_size": 64, "epochs": 2,
            "warmup_fraction": 0.0, "precision": "float32", "jit_compile": False},
    "transformer": {"dropout": 0.1, "learning_rate": 1e-3, "batch_size": 64, "epochs": 4,
                    "warmup_fraction": 0.0, "precision": "float32", "jit_compile": False},
    "minilm": {"dropout": 0.1, "learning_rate": 6e-5, "batch_size": 32, "epochs": 1,
               "warmup_fraction": 0.1, "precision": "float32", "jit_compile": True},
}
#: Positions per review when --max_length is unset: whole-word ids for the
#: models trained here (the CNN: 400, which 87% of train reviews fit; NB-LR
#: reads every word whatever this is); WordPiece pieces (head + tail) for MiniLM, whose step
#: time grows with the length. 96 rather than 128: the released blend scored
#: the same on `valid` (0.9240 against 0.9236) and the run takes about an hour
#: on 2 cores instead of 76 min.
DEFAULT_MAX_LENGTH = {"cnn": 400, "transformer": 512, "minilm": 96}
#: --ngram_blend when unset: on for MiniLM, where blending with NB-LR raised
#: `valid` accuracy (bench/combination.py), and for the CNN, whose default
#: run beats the linear baselines only with it (bench/default_run.py).
DEFAULT_NGRAM_BLEND = {"cnn": True, "transformer": False, "minilm": True}
#: --ngram_order when unset: NB-LR over words, bigrams and trigrams. On
#: `valid`, trigrams raised scikit-learn's NB-LR from 0.9073 to 0.9149
#: (min_df 2, C 0.1; bench/default_run.py). MiniLM keeps the uni+bigrams its
#: README figures were measured with (an hour a run on 2 cores).
DEFAULT_NGRAM_ORDER = {"cnn": 3, "transformer": 3, "minilm": 2}
#: How Transform turns text into ids for each model (models/text.py words and
#: a vocabulary learnt on train, or models/wordpiece.py with the encoder's own).
TOKENIZERS = {"cnn": "words", "transformer": "words", "minilm": "wordpiece"}
#: Whether the model ships the int8 TFLite variant (integer activations).
#: The attention encoders do not: it flipped too many decisions for a file
#: no smaller than dynamic_range's (components/tflite_converter/convert.py).
INT8_TFLITE = {"cnn": True, "transformer": False, "minilm": False}
#: A WordPiece row is [CLS], at least one piece, [SEP].
WORDPIECE_MIN_LENGTH = 3
#: Position embeddings of the packaged all-MiniLM-L6-v2 (its config.json's
#: max_position_embeddings; models/minilm.py checks the file agrees), known
#: here so that a too long --max_length is refused while flags are parsed.
MINILM_POSITIONS = 512


def field(default: Any, help: str, *, low: float | None = None, high: float | None = None,  # noqa: A002
          low_open: bool = False, high_open: bool = False,
          choices: tuple[str, ...] | None = None) -> Any:
    """A dataclass field with its documentation and allowed values.

    `low`/`high` bound numbers (inclusive unless `*_open`); `choices` lists
    the allowed strings. Both feed the CLI and the checks.
    """
    meta: dict[str, Any] = {"help": help, "low": low, "high": high, "low_open": low_open,
                            "high_open": high_open}
    if choices is not None:
        meta["choices"] = choices
    return dataclasses.field(default=default, metadata=meta)


def _bound(value: float) -> str:
    """A range bound as people write it: 10000000, not 1e+07; 0.5; 1e-06."""
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def allowed(f: dataclasses.Field[Any]) -> str:
    """What `f` accepts, in words: `an integer >= 1`, `a number in [0, 1)`, ..."""
    meta = f.metadata
    if meta.get("choices"):
        return "one of " + ", ".join(meta["choices"])
    low, high = meta.get("low"), meta.get("high")
    kind = "an integer" if f.type in (int, "int", "int | None") else "a number"
    if low is not None and high is not None:
        left = "(" if meta["low_open"] else "["
        right = ")" if meta["high_open"] else "]"
        return f"{kind} in {left}{_bound(low)}, {_bound(high)}{right}"
    if low is not None:
        return f"{kind} {'>' if meta['low_open'] else '>='} {_bound(low)}"
    if high is not None:
        return f"{kind} {'<' if meta['high_open'] else '<='} {_bound(high)}"
    return kind


def check(f: dataclasses.Field[Any], value: Any) -> str | None:
    """Why `value` is not allowed for field `f`, or None when it is."""
    meta = f.metadata
    if value is None or isinstance(value, bool):
        return None
    if meta.get("choices"):
        return None if value in meta["choices"] else f"must be {allowed(f)}"
    if not isinstance(value, int | float):
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return f"must be {allowed(f)}"
    low, high = meta.get("low"), meta.get("high")
    too_low = low is not None and (value <= low if meta["low_open"] else value < low)
    too_high = high is not None and (value >= high if meta["high_open"] else value > high)
    return f"must be {allowed(f)}" if too_low or too_high else None


def problems(section: Any) -> list[str]:
    """`--name=value: must be ...` for every out-of-range field of a config section."""
    found = []
    for f in dataclasses.fields(section):
        value = getattr(section, f.name)
        reason = check(f, value)
        if reason:
            found.append(f"--{f.name}={value}: {reason}")
    return found


class CheckedConfig:
    """Refuses out-of-range values however the section is built."""

    def __post_init__(self) -> None:
        found = problems(self)
        if found:
            raise ValueError("; ".join(found))


@dataclasses.dataclass(frozen=True)
class TransformConfig(CheckedConfig):
    vocab_size: int = field(20_000, "vocabulary size (most frequent train tokens)",
                            low=1, high=10_000_000)
    # More than one bucket would make Transform hash unknown tokens with
    # FarmHash, which no phone runtime (LiteRT, MediaPipe) can reproduce.
    num_oov_buckets: int = field(1, "hash buckets for out-of-vocabulary tokens (1: apps must "
                                    "reproduce the ids without TensorFlow's FarmHash)",
                                 low=1, high=1)
    max_length: int | None = field(None, "tokens per review after padding/truncation (unset: "
                                         "CNN 400 words, transformer 512; MiniLM 96 "
                                         "WordPiece pieces)",
                                   low=1, high=100_000)
    ngram_blend: bool | None = field(None, "blend the model with an NB-weighted n-gram "
                                            "logistic model (NB-LR): the Trainer counts the "
                                            "train reviews' n-grams, fits NB-LR and the blend "
                                            "weights (on valid); serving sees one model "
                                            "(unset: on for the CNN and MiniLM)")
    ngram_order: int | None = field(None, "NB-LR: the longest n-gram counted (1: words only; "
                                          "unset: 3, MiniLM 2)", low=1, high=5)
    ngram_vocab_size: int = field(1_000_000, "NB-LR: the most frequent train n-grams kept "
                                             "(1M holds every uni- to trigram of the 22k "
                                             "train reviews seen twice)",
                                  low=1, high=10_000_000)
    ngram_min_count: int = field(2, "NB-LR: n-grams found in fewer train reviews are ignored",
                                 low=1, high=1_000_000)

    def __post_init__(self) -> None:
        super().__post_init__()
        # NB-LR's n-gram keys are base-(word ids) numbers in an int64 (models/ngrams.py).
        base = text.vocab_total(self.vocab_size, self.num_oov_buckets)
        if self.ngram_order and base ** self.ngram_order >= 2 ** 63:
            raise ValueError(f"--ngram_order={self.ngram_order}: with --vocab_size="
                             f"{self.vocab_size} its n-grams do not fit a 64-bit key; lower "
                             "either")


@dataclasses.dataclass(frozen=True)
class TrainConfig(CheckedConfig):
    """What `run_fn` trains and how; the transformer-only fields are ignored by the CNN."""

    model: str = field("cnn", "model architecture", choices=MODELS)
    epochs: int | None = field(None, "epochs (early stopping on `valid` may end sooner; unset: "
                                     "CNN 2, transformer 4, MiniLM 1)", low=1, high=1000)
    batch_size: int | None = field(None, "global batch size (split across replicas; unset: 64, "
                                         "MiniLM 32)", low=1, high=65_536)
    learning_rate: float | None = field(None, "peak learning rate (unset: CNN 3e-3, transformer "
                                              "1e-3, MiniLM 6e-5)",
                                        low=0, high=10, low_open=True)
    lr_schedule: str = field("cosine", "learning-rate schedule over all epochs",
                             choices=("cosine", "constant"))
    warmup_fraction: float | None = field(None, "share of all steps spent warming the rate up "
                                               "linearly from 0 (unset: 0, MiniLM 0.1)",
                                          low=0, high=1, high_open=True)
    optimizer: str = field("adamw", "optimizer", choices=("adam", "adamw"))
    weight_decay: float = field(1e-4, "AdamW decoupled weight decay", low=0, high=1)
    clipnorm: float = field(1.0, "gradient clipping by global norm (0 = off)", low=0, high=1e6)
    dropout: float | None = field(None, "dropout rate (unset: 0.3 for the CNN, 0.1 for the "
                                        "transformer and MiniLM)", low=0, high=1, high_open=True)
    precision: str | None = field(None, "compute dtype (weights stay float32; the exported "
                                        "model is float32; unset: float32, which is faster "
                                        "than bfloat16 on CPUs without AVX512-BF16/AMX)",
                                  choices=("float32", "mixed_bfloat16"))
    jit_compile: bool | None = field(None, "compile each replica's forward and backward pass "
                                           "with XLA (unset: on for MiniLM)")
    encoder_init: str = field("pretrained", "MiniLM: the packaged all-MiniLM-L6-v2 weights, or "
                                            "a random encoder of --num_layers/--embedding_dim/"
                                            "--num_heads/--ff_dim (tests)",
                              choices=("pretrained", "random"))
    l2: float = field(0.0, "L2 penalty on dense kernels", low=0, high=1)
    embedding_dim: int = field(64, "token embedding width (the transformer's model width)",
                               low=1, high=4096)
    filters: int = field(64, "CNN filters per kernel size", low=1, high=4096)
    bigram_buckets: int = field(100_003, "hash buckets of the bigram-bag branch (0 = off)",
                                low=0, high=100_000_000)
    bigram_dim: int = field(16, "embedding width of the bigram-bag branch", low=1, high=4096)
    num_layers: int = field(2, "transformer: encoder blocks", low=1, high=48)
    num_heads: int = field(4, "transformer: attention heads (must divide embedding_dim)",
                           low=1, high=64)
    ff_dim: int = field(256, "transformer: feed-forward width", low=1, high=65_536)
    layer_lr_decay: float = field(1.0, "transformer, MiniLM: each layer group below the head "
                                       "trains at this factor of the rate of the group above "
                                       "it (1 = one rate for all)", low=0, high=1, low_open=True)
    gradual_unfreezing: bool = field(False, "transformer, MiniLM: epoch 1 trains the head only, "
                                            "each later epoch one more encoder block from the "
                                            "top, then the embedding")
    ngram_l2: float = field(2.2e-4, "NB-LR: L2 penalty per example on its weights, fitted "
                                    "by liblinear (2.2e-4 is scikit-learn's C=0.1 at 22k "
                                    "reviews, NB-LR's choice on valid)", low=0, high=10,
                            low_open=True)
    curve_every_steps: int = field(0, "learning curve: measure the model on `valid` reviews "
                                      "every N training steps (history.json's curve_* keys, "
                                      "plotted in the release report; 0: off)",
                                   low=0, high=10_000_000)
    curve_reviews: int = field(512, "learning curve: how many `valid` reviews each point "
                                    "measures, drawn at random once (0: all of them)",
                               low=0, high=10_000_000)
    early_stopping_patience: int = field(2, "epochs without `valid` loss improvement before "
                                            "stopping", low=0, high=1000)
    num_cpu_devices: int = field(2, "logical CPU devices for MirroredStrategy when no GPU",
                                 low=1, high=256)
    seed: int = field(42, "random seed", low=0, high=2**31 - 1)

    def __post_init__(self) -> None:
        for name, value in MODEL_DEFAULTS.get(self.model, {}).items():
            if getattr(self, name) is None:  # frozen: fill in the model's default once, here
                object.__setattr__(self, name, value)
        super().__post_init__()
        if self.model == "cnn" and (self.layer_lr_decay != 1.0
                                             or self.gradual_unfreezing):
            flag = ("--gradual_unfreezing" if self.gradual_unfreezing
                    else f"--layer_lr_decay={self.layer_lr_decay}")
            raise ValueError(f"{flag}: applies to the transformer's layers; --model="
                             f"{self.model} has none")
        if self.model != "cnn" and self.embedding_dim % self.num_heads:
            raise ValueError(f"--num_heads={self.num_heads}: must divide --embedding_dim="
                             f"{self.embedding_dim} (each head gets an equal share)")


#: The TrainConfig fields masked-LM pre-training reads (models/pretraining.py):
#: the encoder's shape, the seed and the devices (the global batch is a
#: multiple of the replicas). Its dropout, AdamW decay and clipping come from
#: PretrainConfig (PRETRAIN_REGULARISATION). The Pretrainer is given only
#: these, so a fine-tuning flag (learning rate, epochs, warm-up, unfreezing,
#: dropout, weight decay, clipping, ...) reuses a cached pre-training.
PRETRAIN_TRAIN_FIELDS = ("model", "embedding_dim", "num_layers", "num_heads", "ff_dim",
                         "num_cpu_devices", "seed")

#: PretrainConfig field -> the TrainConfig field it sets for pre-training.
PRETRAIN_REGULARISATION = {"pretrain_dropout": "dropout",
                           "pretrain_weight_decay": "weight_decay",
                           "pretrain_clipnorm": "clipnorm"}


def for_pretraining(train: TrainConfig, pretrain: PretrainConfig) -> TrainConfig:
    """The TrainConfig pre-training runs under: `train`'s encoder shape, seed
    and devices, `pretrain`'s regularisation, every other field at its
    default (so it joins no cache key)."""
    kept = {name: getattr(train, name) for name in PRETRAIN_TRAIN_FIELDS}
    regularisation = {target: getattr(pretrain, source)
                      for source, target in PRETRAIN_REGULARISATION.items()}
    return TrainConfig(**kept, **regularisation)


def pretraining_settings(pretrain: PretrainConfig) -> dict[str, Any]:
    """`pretrain` as models/pretraining.py reads it: the regularisation fields
    are left out, since for_pretraining has moved them into its TrainConfig
    (one place for each value the Pretrainer's cache key holds)."""
    return {name: value for name, value in dataclasses.asdict(pretrain).items()
            if name not in PRETRAIN_REGULARISATION}


@dataclasses.dataclass(frozen=True)
class PretrainConfig(CheckedConfig):
    """Masked-LM pre-training of the transformer's encoder (models/pretraining.py)."""

    pretrain: bool = field(False, "pre-train the transformer's encoder with masked-LM on the "
                                  "unlabeled reviews and train text before fine-tuning")
    pretrain_epochs: int = field(1, "masked-LM epochs", low=1, high=1000)
    pretrain_window: int = field(128, "tokens per pre-training window (a random span of "
                                      "each review)", low=2, high=100_000)
    mask_rate: float = field(0.15, "share of a window's tokens the model must predict",
                             low=0, high=1, low_open=True, high_open=True)
    pretrain_learning_rate: float = field(5e-4, "masked-LM peak learning rate (warm-up "
                                                "then cosine decay)", low=0, high=10,
                                          low_open=True)
    pretrain_batch_size: int = field(64, "masked-LM global batch size", low=1, high=65_536)
    pretrain_dropout: float | None = field(None, "masked-LM dropout (unset: the transformer's, "
                                                 "0.1)", low=0, high=1, high_open=True)
    pretrain_weight_decay: float = field(1e-4, "masked-LM AdamW decoupled weight decay",
                                         low=0, high=1)
    pretrain_clipnorm: float = field(1.0, "masked-LM gradient clipping by global norm (0 = off)",
                                     low=0, high=1e6)

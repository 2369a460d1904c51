"""The cluster side of a Kubeflow run: image, Beam, Trainer resources, endpoint.

The pipeline's own settings (data, model, thresholds, output) stay in
`pipeline/config.py`; this adds only what the cluster needs, with the same
checked-range `field()`s, so a bad value is refused with one line naming the
flag before anything compiles.
"""

from __future__ import annotations

import dataclasses
import re
import shlex

from kubeflow.image import default_image
from models.config import CheckedConfig, field

__all__ = ["KFP_NAME", "KubeflowConfig", "SubmitConfig", "Toleration", "is_shared_storage",
           "kfp_name", "node_selector", "tolerations"]

#: What KFP accepts as a pipeline or task name (the TFX compiler rejects "_").
KFP_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,127}$")
_SHARED_SCHEMES = ("gs://", "s3://", "hdfs://", "abfs://", "az://")
_LABEL = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9_./-]*[A-Za-z0-9])?$")
_EFFECTS = ("NoSchedule", "PreferNoSchedule", "NoExecute")


def kfp_name(name: str) -> str:
    """`ImdbExampleGen` -> `imdb-example-gen`, `imdb_sentiment` -> `imdb-sentiment`."""
    spaced = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "-", name)
    return re.sub(r"[^a-z0-9-]+", "-", spaced.lower()).strip("-")[:128]


def is_shared_storage(location: str) -> bool:
    """Whether every pod can reach `location`: an object-store URI or an
    absolute path (a volume mounted at the same place in every pod)."""
    return location.startswith(_SHARED_SCHEMES) or location.startswith("/")


@dataclasses.dataclass(frozen=True)
class Toleration:
    key: str
    operator: str
    value: str
    effect: str


def node_selector(text: str) -> dict[str, str]:
    """`k=v,k2=v2` -> {k: v, k2: v2}; raises ValueError naming the bad pair."""
    pairs: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, sep, value = item.partition("=")
        if not sep or not _LABEL.match(key) or (value and not _LABEL.match(value)):
            raise ValueError(f"--trainer_node_selector: {item!r} is not a label key=value")
        pairs[key] = value
    return pairs


def tolerations(text: str) -> list[Toleration]:
    """kubectl's taint syntax, comma-separated: `key=value:Effect` (Equal) or
    `key:Effect` (Exists); raises ValueError naming the bad entry."""
    found = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        head, sep, effect = item.rpartition(":")
        key, eq, value = head.partition("=")
        if not sep or effect not in _EFFECTS or not _LABEL.match(key) or \
                (eq and not _LABEL.match(value)):
            raise ValueError(f"--trainer_tolerations: {item!r} is not key=value:Effect or "
                             f"key:Effect (Effect one of {', '.join(_EFFECTS)})")
        found.append(Toleration(key, "Equal" if eq else "Exists", value, effect))
    return found


@dataclasses.dataclass(frozen=True)
class KubeflowConfig(CheckedConfig):
    image: str = field(default_image(), "component image every executor runs in "
                                        "(`make image`, then push it to your registry)")
    beam_args: str = field("--direct_running_mode=multi_processing --direct_num_workers=0",
                           "Beam pipeline args of ExampleGen, StatisticsGen, Transform and "
                           "Evaluator (e.g. --runner=DataflowRunner ...), shell-quoted")
    trainer_gpus: int = field(0, "GPUs requested by the Trainer's pod", low=0, high=64)
    trainer_accelerator: str = field("nvidia.com/gpu", "accelerator type of those GPUs "
                                     "(KFP: the resource name; Vertex AI: e.g. NVIDIA_TESLA_T4)")
    trainer_cpu: float = field(0.0, "CPU limit of the Trainer's pod (0 = cluster default)",
                               low=0, high=1024)
    trainer_memory_gib: float = field(0.0, "memory limit of the Trainer's pod in GiB "
                                           "(0 = cluster default)", low=0, high=16_384)
    trainer_node_selector: str = field("", "node labels the Trainer's pod must match: k=v,k2=v2")
    trainer_tolerations: str = field("", "taints the Trainer's pod tolerates: "
                                         "key=value:Effect or key:Effect, comma-separated")
    stage_schema: bool = field(True, "copy the bundled schema to OUTPUT_DIR/schema/<fingerprint>/ "
                                     "when --schema_dir is not given")

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.image or any(c.isspace() for c in self.image):
            raise ValueError(f"--image={self.image!r}: must be an image reference")
        node_selector(self.trainer_node_selector)
        tolerations(self.trainer_tolerations)
        try:
            shlex.split(self.beam_args)
        except ValueError as err:
            raise ValueError(f"--beam_args: {err}") from err

    @property
    def beam_pipeline_args(self) -> list[str]:
        return shlex.split(self.beam_args)


@dataclasses.dataclass(frozen=True)
class SubmitConfig(CheckedConfig):
    host: str = field("http://localhost:8080", "KFP API endpoint (e.g. after kubectl "
                                               "port-forward svc/ml-pipeline-ui 8080:80)")
    namespace: str = field("", "Kubernetes namespace (multi-user Kubeflow); empty: the default")
    experiment: str = field("imdb-sentiment", "KFP experiment the run joins")
    run_name: str = field("", "run name; empty: the pipeline name and the time")

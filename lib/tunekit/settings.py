"""The one settings object: defaults < profile file < environment < run record < parameters."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any, ClassVar, Literal

import yaml
from pydantic import (
    AliasChoices,
    BaseModel,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from tunekit.data import FILE_SUFFIXES

PROFILES = ("local", "gke")
PROFILE_DIR = Path(__file__).parent / "profiles"
SECRET_NAMES = {"hf_token": "HF_TOKEN", "hugging_face_hub_token": "HF_TOKEN"}
_SECRET_WORDS = ("token", "password", "secret", "credential")

_GCS_BUCKET = re.compile(r"^[a-z0-9][a-z0-9._-]{1,61}[a-z0-9]$")
_K8S_NAME = re.compile(r"^[a-z]([-a-z0-9]{0,38}[a-z0-9])?$")
_REGION = re.compile(r"^[a-z]+-[a-z]+[0-9]+$")
_HUB_ID = re.compile(r"^[\w.-]+/[\w.-]+$")
_GPU_TYPE = re.compile(r"^nvidia-[a-z0-9-]+$")
_IMAGE_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")


class SettingsError(ValueError):
    """Settings that fail validation; the message names each setting and what is allowed."""


class _ProfileFile(PydanticBaseSettingsSource):
    """Values from `profiles/<profile>.yaml`, the profile taken from the higher sources."""

    def __init__(self, settings_cls: type[BaseSettings], *higher: PydanticBaseSettingsSource):
        super().__init__(settings_cls)
        self.higher = higher

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False  # unused: __call__ reads the whole file

    def __call__(self) -> dict[str, Any]:
        profile = next((p for s in self.higher if (p := s().get("profile"))), "local")
        path = PROFILE_DIR / f"{profile}.yaml"
        if profile not in PROFILES or not path.is_file():
            return {}  # an unknown profile is reported by the `profile` field itself
        return yaml.safe_load(path.read_text()) or {}


class SettingsGroup(BaseModel):
    """A group of settings with one consumer; `as_config()` gives its fields under the names
    that consumer takes (`renamed`), e.g. PEFT's LoraConfig or TRL's SFTConfig."""

    renamed: ClassVar[dict[str, str]] = {}

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(n for n in cls.model_fields if n in cls.__annotations__)

    def as_config(self) -> dict[str, Any]:
        return {self.renamed.get(n, n): getattr(self, n) for n in type(self).names()}


class PlatformSettings(SettingsGroup):
    """Where the series runs: the profile, the cloud project, the cluster, its GPU pool and the
    images (terraform variables of the same names), the local services."""

    profile: Literal["local", "gke"] = Field("local", description="where the series runs")
    project_id: str = Field(
        "",
        validation_alias=AliasChoices("TUNEKIT_PROJECT_ID", "GOOGLE_CLOUD_PROJECT"),
        description="Google Cloud project (gke); env GOOGLE_CLOUD_PROJECT works too",
    )
    region: str = Field(
        "us-central1",
        validation_alias=AliasChoices("TUNEKIT_REGION", "GOOGLE_CLOUD_REGION"),
        description="Google Cloud region of cluster and bucket; env GOOGLE_CLOUD_REGION too",
    )
    cluster_name: str = Field("tunekit", description="GKE cluster name")
    bucket: str = Field("", description="GCS bucket for MLflow artifacts; empty: derived")
    service_timeout_s: float = Field(120.0, gt=0, le=3600, description="wait for a service")
    mlflow_outage_s: float = Field(
        300.0,
        ge=0,
        le=86400,
        description="the fine-tune waits this long for an MLflow that stopped answering, "
        "then stops (a re-run of stage 03 resumes into the same MLflow run)",
    )
    mlflow_backend: Literal["sqlite", "postgresql"] = Field(
        "sqlite",
        description="MLflow's database: sqlite (local only) or postgresql (local: a server "
        "from the Debian package in the run dir; gke: always)",
    )
    dry_run: bool = Field(
        False, description="gke: print every command and write the manifests; touch no cloud"
    )
    namespace: str = Field("tunekit", description="gke: Kubernetes namespace of all workloads")
    gpu_type: str = Field("nvidia-l4", description="gke: accelerator of the GPU node pool")
    gpu_count: int = Field(1, ge=1, le=16, description="gke: GPUs per node and per fine-tune")
    gpu_machine_type: str = Field("g2-standard-8", description="gke: machine of the GPU pool")
    gpu_spot: bool = Field(True, description="gke: Spot GPU nodes (the Job resumes if preempted)")
    gpu_zones: list[str] = Field(
        default_factory=list,
        description="gke: zones of the GPU pool; empty: the region's zones known to have gpu_type",
    )
    image_tag: str = Field("", description="gke: tag of the kit's images; empty: the kit version")
    job_deadline_h: float = Field(
        24.0, gt=0, le=168, description="gke: the fine-tune Job fails after this many hours"
    )
    schedule_timeout_s: float = Field(
        1800.0,
        gt=0,
        description="gke: fail stage 03 when the fine-tune pod finds no node for this long "
        "(no GPU quota, requests larger than the node)",
    )


class DataSettings(SettingsGroup):
    """The rows: where they come from, how many, the held-out split (`tunekit.data`)."""

    dataset: str = Field(
        "b-mc2/sql-create-context", description="Hub id, .json/.jsonl/.parquet file or synthetic"
    )
    synthetic_rows: int = Field(14000, ge=100, description="rows the synthetic generator makes")
    dataset_limit: int = Field(0, ge=0, description="use at most this many rows; 0: all")
    eval_size: int = Field(200, ge=1, description="held-out rows for evaluation")
    seed: int = Field(42, description="seed for data split, generator and training")


class ModelSettings(SettingsGroup):
    """The base model and how it is loaded (`tunekit.models.load_base`)."""

    model_id: str = Field("google/gemma-2-9b", description="Hub id, local directory or tiny-gemma2")
    load_in_4bit: bool = Field(False, description="QLoRA: 4-bit base weights (small GPUs)")


class LoraSettings(SettingsGroup):
    """PEFT's LoraConfig (`as_config()` gives its argument names)."""

    renamed: ClassVar[dict[str, str]] = {
        "lora_r": "r",
        "lora_target_modules": "target_modules",
        "lora_modules_to_save": "modules_to_save",
    }

    lora_r: int = Field(16, ge=1, le=1024, description="LoRA rank")
    lora_alpha: int = Field(32, ge=1, description="LoRA scaling numerator")
    lora_dropout: float = Field(0.05, ge=0, lt=1, description="LoRA dropout")
    lora_target_modules: list[str] = Field(
        ["all-linear"], description="modules LoRA adapts: 'all-linear' or names like q_proj"
    )
    lora_modules_to_save: list[str] = Field(
        [], description="modules trained in full next to LoRA (tiny-gemma2: its head)"
    )


class TrainingSettings(SettingsGroup):
    """TRL's SFTConfig (names as in transformers' TrainingArguments; `warmup_ratio` is its
    `warmup_steps` below 1)."""

    renamed: ClassVar[dict[str, str]] = {"warmup_ratio": "warmup_steps"}

    max_steps: int = Field(500, ge=1, description="optimizer steps")
    per_device_train_batch_size: int = Field(4, ge=1, description="examples per step and device")
    gradient_accumulation_steps: int = Field(4, ge=1, description="micro-batches per step")
    learning_rate: float = Field(2e-4, gt=0, lt=1, description="peak learning rate")
    lr_scheduler_type: Literal["cosine", "linear", "constant", "constant_with_warmup"] = Field(
        "cosine", description="learning-rate schedule"
    )
    warmup_ratio: float = Field(0.05, ge=0, lt=1, description="share of steps spent warming up")
    max_length: int = Field(512, ge=16, description="longest tokenized example kept")
    save_steps: int = Field(100, ge=1, description="checkpoint every this many steps")
    logging_steps: int = Field(10, ge=1, description="log metrics every this many steps")


class DistributedSettings(SettingsGroup):
    """How many training processes, where, and how they share the model (torchrun, Kubeflow
    Trainer: `tunekit.distributed`)."""

    nproc_per_node: int = Field(
        0,
        ge=0,
        le=64,
        description="training processes per machine (torchrun); 0: one per GPU (gke: "
        "gpu_count), one locally",
    )
    num_nodes: int = Field(
        1, ge=1, le=64, description="gke: machines the fine-tune spans (a Kubeflow TrainJob)"
    )
    distributed_strategy: Literal["ddp", "fsdp"] = Field(
        "ddp",
        description="more than one process: ddp (a copy of the model in each) or fsdp "
        "(the base sharded across them, for bases that do not fit one GPU)",
    )

    @property
    def world_size(self) -> int:
        """Training processes in all: `nproc_per_node` on each of `num_nodes` machines."""
        return self.nproc_per_node * self.num_nodes


class EvaluationSettings(SettingsGroup):
    """The evaluation by generation that ends a fine-tune (`tunekit.train.evaluate`), and how
    the servers decode (`tunekit.inference`)."""

    eval_max_new_tokens: int = Field(96, ge=1, le=1024, description="longest generated answer")
    eval_batch_size: int = Field(32, ge=1, description="prompts per generate call")
    constrained_decoding: bool = Field(
        True,
        description="answers are SQL over the question's own tables (a grammar per question: "
        "tunekit.grammar), in evaluation and in every server; off: free text",
    )
    eval_set_rows: int = Field(
        0,
        ge=0,
        description="evaluate on this many rows of each shipped set (validation, test), spread "
        "over it; 0: all (quick runs, e.g. the tests)",
    )
    free_literals: bool = Field(
        False,
        description="constrained answers may compare with any short value, not only spans of "
        "the question (as written or lower-cased)",
    )


class TrackingSettings(SettingsGroup):
    """Where a fine-tune is recorded (the MLflow experiment) and what it belongs to."""

    experiment_name: str = Field("gemma2-text-to-sql", description="MLflow experiment")
    sweep_id: str = Field(
        "", description="the sweep this fine-tune is a trial of (`tunekit sweep` sets it)"
    )
    reproduces: str = Field(
        "", description="the MLflow run this fine-tune reproduces (`tunekit reproduce` sets it)"
    )


class RegistrySettings(SettingsGroup):
    """The Model Registry: which name the champion gets, and which run becomes it."""

    registered_model_name: str = Field(
        "gemma2-text-to-sql", description="Model Registry name of the champion"
    )
    pin_run_id: str = Field("", description="register this MLflow run instead of the best one")


GROUPS: dict[str, type[SettingsGroup]] = {
    "platform": PlatformSettings,
    "data": DataSettings,
    "model": ModelSettings,
    "lora": LoraSettings,
    "training": TrainingSettings,
    "distributed": DistributedSettings,
    "evaluation": EvaluationSettings,
    "tracking": TrackingSettings,
    "registry": RegistrySettings,
}
# A fine-tune's identity: its job name (`Settings.finetune_job`) is a digest of the settings
# marked True, flat (a field may move between groups and keep every name). Two settings that
# agree on them are one fine-tune: its result is reused, its checkpoints resumed. Every field
# is listed (tests/test_settings.py): a new one must say whether it shapes the result.
JOB_IDENTITY: dict[str, bool] = {
    **dict.fromkeys(PlatformSettings.names(), False),  # where it runs, not what it computes
    **dict.fromkeys(DataSettings.names(), True),
    **dict.fromkeys(ModelSettings.names(), True),
    **dict.fromkeys(LoraSettings.names(), True),
    **dict.fromkeys(TrainingSettings.names(), True),
    **dict.fromkeys(DistributedSettings.names(), True),
    **dict.fromkeys(EvaluationSettings.names(), True),  # the metrics the result records
    **dict.fromkeys(TrackingSettings.names(), True),  # its run lives in that experiment
    **dict.fromkeys(RegistrySettings.names(), False),  # which result is served
}
# Identity settings added after others' jobs were named, at the value that leaves those names
# as they were (the field is then left out of the digest)
JOB_NEUTRAL: dict[str, Any] = {
    "sweep_id": "",
    "reproduces": "",
    "nproc_per_node": 1,
    "num_nodes": 1,
    "distributed_strategy": "ddp",
}


def identity_fields() -> list[str]:
    """The settings a fine-tune's job name is made of, in declaration order."""
    return [name for name, shapes in JOB_IDENTITY.items() if shapes]


class Settings(  # bases in reverse: pydantic orders the fields platform first
    BaseSettings,
    RegistrySettings,
    TrackingSettings,
    EvaluationSettings,
    DistributedSettings,
    TrainingSettings,
    LoraSettings,
    ModelSettings,
    DataSettings,
    PlatformSettings,
):
    """Everything a run can be told, flat (`-p lora_r=8`, `TUNEKIT_LORA_R=8`), in groups by
    consumer (`settings.lora`, `settings.training`, ...)."""

    model_config = SettingsConfigDict(
        env_prefix="TUNEKIT_", extra="forbid", validate_by_name=True, validate_default=True
    )

    def group(self, name: str) -> Any:
        """The settings of group `name` (see GROUPS)."""
        cls = GROUPS[name]
        return cls.model_construct(**{n: getattr(self, n) for n in cls.names()})

    @property
    def platform(self) -> PlatformSettings:
        return self.group("platform")

    @property
    def data(self) -> DataSettings:
        return self.group("data")

    @property
    def model(self) -> ModelSettings:
        return self.group("model")

    @property
    def lora(self) -> LoraSettings:
        return self.group("lora")

    @property
    def training(self) -> TrainingSettings:
        return self.group("training")

    @property
    def distributed(self) -> DistributedSettings:
        return self.group("distributed")

    @property
    def evaluation(self) -> EvaluationSettings:
        return self.group("evaluation")

    @property
    def tracking(self) -> TrackingSettings:
        return self.group("tracking")

    @property
    def registry(self) -> RegistrySettings:
        return self.group("registry")

    @property
    def finetune_job(self) -> str:
        """`ft-<digest>`: the fine-tune of these settings (JOB_IDENTITY). Settings of the
        platform or the registry do not change it; a sweep's trial and a reproduction are
        fine-tunes of their own (`sweep_id`, `reproduces`)."""
        identity = {
            name: getattr(self, name)
            for name in identity_fields()
            if name not in JOB_NEUTRAL or getattr(self, name) != JOB_NEUTRAL[name]
        }
        digest = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:10]
        return f"ft-{digest}"

    def to_yaml(self) -> str:
        """Every setting, flat: the fine-tune's settings file (`tunekit.train --config`)."""
        return yaml.safe_dump(self.model_dump(), sort_keys=False)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return init_settings, env_settings, _ProfileFile(settings_cls, init_settings, env_settings)

    @field_validator("lora_target_modules", "lora_modules_to_save", mode="before")
    @classmethod
    def _names(cls, v: Any) -> Any:
        if isinstance(v, str):  # "q_proj,v_proj" from the environment or a -p parameter
            return [name.strip() for name in v.split(",") if name.strip()]
        return v

    @field_validator("region")
    @classmethod
    def _region(cls, v: str) -> str:
        if not _REGION.match(v):
            raise ValueError("a Google Cloud region like 'us-central1'")
        return v

    @field_validator("cluster_name")
    @classmethod
    def _cluster_name(cls, v: str) -> str:
        if not _K8S_NAME.match(v) or len(v) > 24:  # + "-nodes": a service account id (<= 30)
            raise ValueError("1-24 lowercase letters, digits or '-', starting with a letter")
        return v

    @field_validator("namespace")
    @classmethod
    def _namespace(cls, v: str) -> str:
        if not _K8S_NAME.match(v):
            raise ValueError("1-40 lowercase letters, digits or '-', starting with a letter")
        return v

    @field_validator("gpu_type")
    @classmethod
    def _gpu_type(cls, v: str) -> str:
        if not _GPU_TYPE.match(v):
            raise ValueError("a GKE accelerator like 'nvidia-l4', 'nvidia-tesla-a100'")
        return v

    @field_validator("image_tag")
    @classmethod
    def _image_tag(cls, v: str) -> str:
        if v and not _IMAGE_TAG.match(v):
            raise ValueError("a Docker tag: 1-128 of A-Z a-z 0-9 _ . -, not starting with . or -")
        return v

    @field_validator("bucket")
    @classmethod
    def _bucket(cls, v: str) -> str:
        if v and (not _GCS_BUCKET.match(v) or ".." in v or v.startswith("goog")):
            raise ValueError("a GCS bucket name: 3-63 of a-z 0-9 - _ . , starting and ending alnum")
        return v

    @field_validator("experiment_name")
    @classmethod
    def _experiment_name(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("a non-empty experiment name")
        return v

    @field_validator("model_id")
    @classmethod
    def _model_id(cls, v: str) -> str:
        if v != "tiny-gemma2" and not _HUB_ID.match(v) and not Path(v).expanduser().is_dir():
            raise ValueError(
                "'tiny-gemma2', a Hub id like 'google/gemma-2-9b' or a local directory"
            )
        return v

    @field_validator("dataset")
    @classmethod
    def _dataset(cls, v: str) -> str:
        if v == "synthetic":
            return v
        if v.endswith(FILE_SUFFIXES):
            return v  # read and checked when a run starts with it (tunekit.run.check_rows)
        if _HUB_ID.match(v) and not Path(v).exists():
            return v
        raise ValueError(
            "'synthetic', a Hub id like 'b-mc2/sql-create-context' or a .json/.jsonl/.parquet file"
        )

    @field_validator("lora_target_modules")
    @classmethod
    def _targets(cls, v: list[str]) -> list[str]:
        if not v:
            raise ValueError("at least one module name, or 'all-linear'")
        return v

    @model_validator(mode="after")
    def _derive(self) -> Settings:
        if self.profile == "gke" and not self.project_id:
            raise ValueError(
                "project_id: required on profile 'gke' "
                "(set GOOGLE_CLOUD_PROJECT or -p project_id=...)"
            )
        if self.profile == "gke":
            if self.mlflow_backend != "postgresql":
                raise ValueError(
                    "mlflow_backend: profile 'gke' runs MLflow on PostgreSQL "
                    "(allowed: 'postgresql')"
                )
            self._check_gpu_machine()
            self._check_gpu_zones()
        rows = self.dataset_limit or (self.synthetic_rows if self.dataset == "synthetic" else 0)
        if rows and self.eval_size >= rows:  # other datasets are checked when they are read
            raise ValueError(f"eval_size: must be smaller than the number of rows ({rows})")
        self._check_processes()
        if not self.bucket:
            self.bucket = f"{self.project_id}-tunekit" if self.profile == "gke" else "tunekit"
        if not self.image_tag:
            from tunekit.provenance import kit_version

            self.image_tag = kit_version()
        return self

    def _check_processes(self) -> None:
        """Resolve `nproc_per_node` 0 (one process per GPU on gke, one locally) and check the
        processes fit where they run."""
        if self.profile == "local":
            if self.num_nodes != 1:
                raise ValueError("num_nodes: the local profile trains on this one machine (1)")
            self.nproc_per_node = self.nproc_per_node or 1
        else:
            self.nproc_per_node = self.nproc_per_node or self.gpu_count
            if self.nproc_per_node > self.gpu_count:
                raise ValueError(
                    f"nproc_per_node: at most one process per GPU ({self.gpu_count} per node, "
                    "gpu_count)"
                )
        if self.distributed_strategy == "fsdp" and self.world_size == 1:
            raise ValueError(
                "distributed_strategy: fsdp shards the base across processes; with one "
                "process use ddp (or set nproc_per_node/num_nodes)"
            )

    def _check_gpu_zones(self) -> None:
        """The GPU pool gets zones of the region: those given, else those known to have the
        accelerator (tunekit.machines.ZONES); an unknown pairing is refused
        before terraform creates a pool that GKE cannot place."""
        from tunekit.machines import ZONES, gpu_zones

        if not self.gpu_zones:
            self.gpu_zones = gpu_zones(self.gpu_type, self.region)
        if not self.gpu_zones:
            known = ", ".join(sorted(ZONES.get(self.gpu_type, {}))) or "none"
            raise ValueError(
                f"gpu_zones: no zones of {self.region} are known to have {self.gpu_type} "
                f"(known regions: {known}); set gpu_zones to zones of {self.region} that have it "
                f"(gcloud compute accelerator-types list --filter=zone~{self.region})"
            )
        if outside := [z for z in self.gpu_zones if z.rsplit("-", 1)[0] != self.region]:
            raise ValueError(f"gpu_zones: {outside} are not zones of region {self.region}")

    def _check_gpu_machine(self) -> None:
        """The GPU pool's machine exists, carries `gpu_type` and has `gpu_count` GPUs: the
        pods are sized from it (tunekit.machines, tunekit.backends.gke.node_sizing)."""
        from tunekit.machines import MACHINES

        machine = MACHINES.get(self.gpu_machine_type)
        if machine is None:
            raise ValueError(f"gpu_machine_type: one of the GPU machines {', '.join(MACHINES)}")
        if machine.accelerator != self.gpu_type:
            raise ValueError(
                f"gpu_type: {self.gpu_machine_type} carries {machine.accelerator}, "
                f"not {self.gpu_type}"
            )
        if machine.gpus != self.gpu_count:
            raise ValueError(
                f"gpu_count: {self.gpu_machine_type} has {machine.gpus} GPU(s), "
                f"not {self.gpu_count}"
            )


def load_settings(**values: Any) -> Settings:
    """Build and validate the settings; `values` are parameters, the highest layer.

    Values that are None or "" count as unset. Raises SettingsError naming each bad setting.
    """
    values = {k: v for k, v in values.items() if v is not None and v != ""}
    for name in values:
        _refuse_secret(name)
    try:
        return Settings(**values)
    except ValidationError as e:
        raise SettingsError(_explain(e)) from None


def _refuse_secret(name: str) -> None:
    lowered = name.lower()
    if lowered in Settings.model_fields:
        return  # settings are not secrets
    if lowered in SECRET_NAMES or any(w in lowered for w in _SECRET_WORDS):
        env = SECRET_NAMES.get(lowered, name.upper())
        raise SettingsError(
            f"setting `{name}` looks like a secret; secrets are never parameters. "
            f"Set {env} in the environment (a Kubernetes Secret on GKE)."
        )


def _explain(err: ValidationError) -> str:
    known = ", ".join(Settings.model_fields)
    lines = ["invalid settings:"]
    for e in err.errors():
        name = ".".join(str(p) for p in e["loc"])
        msg = e["msg"].removeprefix("Value error, ")
        got = f" (got {e['input']!r})" if name and e["type"] != "extra_forbidden" else ""
        if e["type"] == "extra_forbidden":
            msg = f"unknown setting; known settings: {known}"
        elif e["type"] == "literal_error":
            msg = msg.replace("Input should be", "allowed:")
        elif not name and ": " in msg:  # a cross-field check names its setting first
            name, msg = msg.split(": ", 1)
        lines.append(f"  {name or 'settings'}: {msg}{got}")
    return "\n".join(lines)

"""The settings' groups, one per consumer (the platform, the data, PEFT's LoraConfig, TRL's
SFTConfig, ...), and which of their fields make a fine-tune's identity (its job name)."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import AliasChoices, BaseModel, Field


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
    serve_max_replicas: int = Field(
        2,
        ge=1,
        le=16,
        description="gke: the FastAPI and vLLM servers scale out to this many pods (a GPU node "
        "each) on their queue",
    )
    serve_queue_target: int = Field(
        5,
        ge=1,
        le=1000,
        description="gke: requests waiting per server pod (vllm:num_requests_waiting) above "
        "which the servers scale out",
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
    promotion: Literal["rollout", "immediate"] = Field(
        "rollout",
        description="a new best becomes `challenger` (the champion stays until a rollout's live "
        "numbers promote it: `tunekit.promotion`; with no champion yet it is promoted at once), "
        "or `champion` at once",
    )
    challenger_share: float = Field(
        0.1,
        ge=0,
        le=1,
        description="during a rollout, the share of the requests naming no adapter that the "
        "challenger answers",
    )


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

"""The one settings object: defaults < profile file < environment < run record < parameters."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import (
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from tunekit.data import FILE_SUFFIXES
from tunekit.settings_groups import (
    GROUPS,
    JOB_NEUTRAL,
    DataSettings,
    DistributedSettings,
    EvaluationSettings,
    LoraSettings,
    ModelSettings,
    PlatformSettings,
    RegistrySettings,
    TrackingSettings,
    TrainingSettings,
    identity_fields,
)

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

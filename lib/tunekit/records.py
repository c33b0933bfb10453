"""What each stage records in `state.json`, section by section, as types: the Backend's
operations return these, `RunState.section` reads them, and mypy checks that every backend
writes the same fields (a field one profile alone has is marked so).

A value only a live platform has is recorded as a marker string where the backend read none
(hence `int | str`). A section is written in steps (`RunState.update` merges), so every field
is optional to the type checker; the comments say which profile writes it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal, NotRequired, TypedDict


class Login(TypedDict):
    """Where a login is kept (never the password itself)."""

    username: str
    password_in: str


class ClusterRecord(TypedDict, total=False):
    """Stage 01: the cluster (locally: the GCS emulator) and the bucket."""

    profile: str
    bucket: str
    bucket_url: str
    endpoints: dict[str, str]  # local: {"gcs": the emulator's URL}
    reused: bool  # local: the emulator was running already
    dry_run: bool  # gke
    cluster: str  # gke
    registry: str  # gke: Artifact Registry of the kit's images
    build_service_account: str  # gke
    gpus_ready: int | str  # gke
    commands: str  # gke: commands.sh


class MlflowRecord(TypedDict, total=False):
    """Stage 02: the tracking server, its login and the experiment."""

    tracking_uri: str
    ui_url: str
    experiment_name: str
    experiment_id: str
    artifacts_destination: str
    login: Login
    backend: str  # local: sqlite or postgresql
    reused: bool  # local
    in_cluster_uri: str  # gke
    helm_values: str  # gke


class FinetuneResult(TypedDict, total=False):
    """What a finished fine-tune writes (`result.json`; `tunekit.train`). Its evaluation's
    metrics (`<set><model>_execution_accuracy`, ...) are in it too, under their MLflow names;
    those the stages read are typed here."""

    mlflow_run_id: str
    experiment_id: str
    model_uri: str
    base_model: str
    eval_loss: float | None
    steps: int
    resumed_from_step: int
    score: float
    tuned_execution_accuracy: float
    validation_tuned_execution_accuracy: float
    tuned_exact_match: float
    validation_tuned_exact_match: float


class FinetuneRecord(FinetuneResult, total=False):
    """Stage 03: the fine-tune's job while it runs, then its result."""

    status: str  # running, finished, failed; on gke also the Job's phase while followed
    job: str
    log: str
    reused: bool  # a finished job's result, not trained again
    pid: int | None  # local: the training process while it runs
    create_time: float | None  # local: that process's start (a reused pid is not it)
    job_dir: str  # local
    attempt: int  # gke: the Job's attempt
    job_uri: str  # gke: the job's folder in the bucket


class SweepRecord(TypedDict, total=False):
    """Stage 03's search (`tunekit sweep`): its MLflow parent run and trials."""

    id: str
    parent_run_id: str
    space: Mapping[str, Sequence[str]]
    sampler: str
    trials: list[dict[str, Any]]
    finished: int
    failed: int
    best_run_id: str | None
    score: float
    experiment: str  # the gke plan: the Katib Experiment's name (a live sweep summarizes)


class RegistryRecord(TypedDict, total=False):
    """Stage 04: the version it registered (`alias` champion, or challenger with the setting
    `promotion=rollout`), and the version the champion alias names (what 05 and 06 serve)."""

    registered_model_name: str
    version: int | str
    alias: str
    champion_version: int | str
    challenger_version: int | str  # "" when there is none (none registered, or concluded)
    model_uri: str
    run_id: str
    pinned: bool
    created: bool
    score: float
    tuned_execution_accuracy: float
    validation_tuned_execution_accuracy: float
    ui_url: str


class Server(TypedDict, total=False):
    """A model server of stage 05 or 06 on the champion."""

    url: str
    model_uri: str
    model_version: str
    docs: str  # FastAPI
    infer_url: str  # MLServer: its V2 endpoint
    reused: bool  # local
    in_cluster_url: str  # gke
    gateway_infer_url: str  # gke, MLServer: its V2 endpoint through the Gateway, in the VPC
    storage_uri: str  # gke, MLServer: the model's folder in the bucket
    canary: Canary  # gke, MLServer during a rollout: the challenger


class Canary(TypedDict):
    """Stage 06 on gke during a rollout: the challenger as MLServer's KServe canary."""

    model_version: str
    storage_uri: str
    traffic_percent: int
    in_cluster_url: str


ServerName = Literal["fastapi", "mlserver"]  # the servers `tunekit.ask` asks


class VllmServer(TypedDict):
    """Stage 06 on gke with a Hub base: the vLLM InferenceService with the adapter."""

    openai_url: str
    model: str
    vllm_version: list[int]
    challenger_model: NotRequired[str]  # during a rollout: the challenger's adapter


class ServingRecord(TypedDict, total=False):
    """Stages 05 and 06: the servers, by name."""

    fastapi: Server
    mlserver: Server
    vllm: VllmServer


class CleanupRecord(TypedDict, total=False):
    """Stage 07: what was stopped and deleted."""

    stopped: list[str]
    still_running: list[str]
    volumes_deleted: list[str]  # gke
    disks_left: list[str]  # gke: Persistent Disks a deletion left, to delete by hand
    destroyed: bool | str  # gke: terraform destroy ran
    commands: str  # gke


class ReproduceRecord(TypedDict, total=False):
    """`tunekit reproduce`: a recorded fine-tune again, compared."""

    run_id: str
    reproduction_run_id: str
    tag: str
    metrics: list[dict[str, Any]]
    tolerance: float
    matches: bool
    warnings: list[str]


class RolloutRecord(TypedDict, total=False):
    """`tunekit rollout`: the challenger promoted or rolled back, and on which numbers."""

    verdict: str  # "promoted" or "rolled back"
    reasons: list[str]  # why it was rolled back ([] when promoted)
    challenger_version: int | str  # the version decided on
    aliases: dict[str, str]  # alias -> version, after the decision
    numbers: dict[str, float | int | None]  # the live numbers (tunekit.promotion.decide)
    validation_rows: int  # asked of each adapter through the live endpoint
    seconds: float

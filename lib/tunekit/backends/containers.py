"""The kit's containers, typed and independent of where they run.

One source of truth: the gke profile wraps each `Container` into a pod (`gke.workloads`), the
local profile runs the same container as a process (`Container.process`). A value that depends
on the place is a placeholder, filled in by each: `PORT` (the container's port, or a free local
one), `LISTEN` (0.0.0.0 in a pod, 127.0.0.1 here) and `InMount` (a path in a mounted volume,
or in the local directory that stands for it).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path

from tunekit import credentials, distributed
from tunekit.models import is_local_model, places_base
from tunekit.run import Run

CONFIG, WORKSPACE, MODELS = "config", "workspace", "models"  # the volumes containers mount
MOUNT_PATHS = {CONFIG: "/etc/tunekit", WORKSPACE: "/workspace", MODELS: "/mnt/models"}
SERVE_PORT = 8080
HF_SECRET = "hf-token"
FINETUNE, SERVE, MLSERVER, MLFLOW = "finetune", "serve", "mlserver", "mlflow"
IMAGES = (FINETUNE, SERVE, MLSERVER, MLFLOW)  # the kit's images (cloudbuild.yaml builds them)


class Placeholder(Enum):
    """A value each platform fills in: the port, the address to listen on."""

    PORT = "port"
    LISTEN = "listen"


PORT, LISTEN = Placeholder.PORT, Placeholder.LISTEN


@dataclass(frozen=True)
class InMount:
    """`path` inside volume `volume` (a path of the container, or of the local stand-in)."""

    volume: str
    path: str = ""

    def under(self, root: str) -> str:
        return f"{root}/{self.path}" if self.path else root


@dataclass(frozen=True)
class SecretRef:
    """An environment variable from key `key` of Secret `secret` (optional: may be absent)."""

    secret: str
    key: str


Value = str | InMount | Placeholder


@dataclass(frozen=True)
class Process:
    """A container as a local process: argv, environment (on top of os.environ), health path."""

    argv: list[str]
    env: dict[str, str]
    health_path: str


@dataclass(frozen=True)
class Container:
    """What runs: image, command, arguments, environment (plain and from Secrets), the volumes
    it mounts, its port and readiness path."""

    name: str
    image: str
    command: tuple[Value, ...]
    args: tuple[Value, ...] = ()
    env: Mapping[str, Value] = field(default_factory=dict)
    secret_env: Mapping[str, SecretRef] = field(default_factory=dict)
    mounts: Mapping[str, bool] = field(default_factory=dict)  # volume -> read-only
    port: int | None = None
    ready_path: str = "/"

    def resolve(self, value: Value, dirs: Mapping[str, str], port: str, listen: str) -> str:
        if isinstance(value, InMount):
            if value.volume not in self.mounts:
                raise ValueError(f"container {self.name} does not mount volume {value.volume!r}")
            return value.under(dirs[value.volume])
        if value is PORT:
            return port
        if value is LISTEN:
            return listen
        return str(value)

    def in_pod(self, value: Value) -> str:
        """`value` as the pod sees it."""
        return self.resolve(value, MOUNT_PATHS, str(self.port), "0.0.0.0")

    def process(
        self,
        dirs: Mapping[str, str],
        secrets: Callable[[str, str], str | None],
        executables: Mapping[str, str] | None = None,
        overrides: Mapping[str, str] | None = None,
    ) -> Process:
        """Run here: each mounted volume is the local directory `dirs[volume]`, the port is
        `{port}` (the service runner fills it in), listening on 127.0.0.1. A variable from a
        Secret takes `secrets(secret, key)` (the run's credentials); one it does not know is left
        to the environment (e.g. HF_TOKEN)."""
        missing = set(self.mounts) - set(dirs)
        if missing:
            raise ValueError(f"container {self.name}: no local directory for {sorted(missing)}")
        python = Path(sys.executable)
        local = {"python": str(python), "torchrun": str(python.with_name("torchrun")),
                 **(executables or {})}  # fmt: skip

        def here(value: Value) -> str:
            return self.resolve(value, dirs, "{port}", "127.0.0.1")

        command = [here(c) for c in self.command]
        argv = [local.get(command[0], command[0]), *command[1:], *map(here, self.args)]
        env = {name: here(value) for name, value in self.env.items()}
        for name, ref in self.secret_env.items():
            if (found := secrets(ref.secret, ref.key)) is not None:
                env[name] = found
        return Process(argv, {**env, **(overrides or {})}, self.ready_path)


def mlflow_login(secret: str) -> dict[str, SecretRef]:
    """MLflow's client login (MLFLOW_TRACKING_USERNAME/PASSWORD) from Secret `secret`."""
    user, password = credentials.LOGIN_VARIABLES
    return {user: SecretRef(secret, "username"), password: SecretRef(secret, "password")}


HF_TOKEN = {"HF_TOKEN": SecretRef(HF_SECRET, "HF_TOKEN")}
ADMIN_LOGIN = mlflow_login(credentials.ADMIN)  # the fine-tune writes its run
READER_LOGIN = mlflow_login(credentials.READER)  # servers only read the registry


def finetune(
    run: Run, job: str, tracking_uri: str, params: Mapping[str, str] | None = None
) -> Container:
    """`python -m tunekit.train` with the job's settings file into `<workspace>/finetune/<job>`,
    resuming from its last checkpoint; launched by `torchrun` when the settings ask for more
    than one process (`tunekit.distributed`: each platform gives torchrun its rendezvous).
    `params` (a sweep's trial): `--param` values over the settings file, and the output in
    `<workspace>/finetune/<the trial settings' job name>`, as a single fine-tune of the same
    settings would write it."""
    s = run.settings
    command = distributed.LAUNCHER if distributed.launched(s) else ("python", "-m", "tunekit.train")
    local_data = s.dataset == "synthetic" or Path(s.dataset).expanduser().is_file()
    env: dict[str, Value] = {
        "MLFLOW_TRACKING_URI": tracking_uri,
        "MLFLOW_FLATTEN_PARAMS": "true",
        "PYTHONUNBUFFERED": "1",
        "TOKENIZERS_PARALLELISM": "false",
        # nothing to download: skip the Hub's lookups
        **({"HF_HUB_OFFLINE": "1"} if is_local_model(s.model_id) and local_data else {}),
    }
    return Container(
        name="train",
        image=FINETUNE,
        command=command,
        args=(
            "--config",
            InMount(CONFIG, "config.yaml"),
            *(
                ("--output-dir", InMount(WORKSPACE, f"finetune/{job}"))
                if params is None
                else ("--jobs-dir", InMount(WORKSPACE, "finetune"))
            ),
            "--models-dir",
            InMount(WORKSPACE, "models"),
            "--resume",
            *(f"--param={name}={value}" for name, value in (params or {}).items()),
        ),
        env=env,
        secret_env={**HF_TOKEN, **ADMIN_LOGIN},
        mounts={CONFIG: True, WORKSPACE: False},
    )


def server_env(run: Run, tracking_uri: str, version: str) -> dict[str, Value]:
    """What a server needs to load the champion (a new version restarts the server)."""
    return {
        "MLFLOW_TRACKING_URI": tracking_uri,
        "TUNEKIT_SERVED_VERSION": version,
        "HF_HUB_OFFLINE": "1" if is_local_model(run.settings.model_id) else "0",
    }


def decoding_args(run: Run) -> tuple[str, ...]:
    """`tunekit.serve`'s flags for the settings' decoding (constrained unless told otherwise)."""
    return (("--free",) if not run.settings.constrained_decoding else ()) + (
        ("--free-literals",) if run.settings.free_literals else ()
    )


def serve(
    run: Run, model_uri: str, version: str, tracking_uri: str, challenger: str = ""
) -> Container:
    """`python -m tunekit.serve` (FastAPI) on `model_uri`, logged in as the reader; with a
    `challenger` version (a rollout), its adapter beside the champion's, sharing the requests
    (`tunekit.traffic`). A base model the fine-tune placed (tiny-gemma2) lies in the workspace,
    which it mounts read-only."""
    rollout: tuple[str, ...] = ()
    if challenger:
        share = str(run.settings.challenger_share)
        # the version recorded, not the alias: a concluded rollout's deleted alias never
        # leaves a server unable to start
        uri = f"models:/{run.settings.registered_model_name}/{challenger}"
        rollout = ("--challenger-uri", uri, "--challenger-share", share)
    args: tuple[Value, ...] = ("--model-uri", model_uri, "--host", LISTEN, "--port", PORT)
    return Container(
        name="serve",
        image=SERVE,
        command=("python", "-m", "tunekit.serve"),
        args=(*args, *decoding_args(run), *rollout),
        env=server_env(run, tracking_uri, f"{version}+{challenger}" if challenger else version),
        secret_env={**HF_TOKEN, **READER_LOGIN},
        mounts={WORKSPACE: True} if places_base(run.settings.model_id) else {},
        port=SERVE_PORT,
        ready_path="/readyz",
    )


# Stage 06's runtime (lib/tunekit/mlserver_runtime.py): the image copies its modules into
# MLSERVER_RUNTIME_PATH/tunekit/ (docker/kserve/Dockerfile), the local profile into the run's
# mlserver/python/tunekit/ (tunekit.backends.local.processes.mlserver_spec)
MLSERVER_RUNTIME = "tunekit.mlserver_runtime.TunekitMLflowRuntime"
MLSERVER_RUNTIME_PATH = "/opt/tunekit"
# the runtime's modules, alone (MLServer's environment lacks the kit's packages): the runtime
# and the metrics it shares with the FastAPI server (prometheus-client, which MLServer has)
MLSERVER_RUNTIME_MODULES = ("mlserver_runtime.py", "serving_metrics.py")
# What one V2 request may carry (the runtime answers 413 or 422 beyond), and the model
# thread's torch threads (the container has one CPU): MLSERVER_MODEL_EXTRA
MLSERVER_LIMITS = {"max_body_bytes": 262_144, "max_prompts": 8, "max_prompt_tokens": 1024,
                   "torch_threads": 1}  # fmt: skip
# MLServer's adaptive batching: up to 8 requests that arrive within 10 ms, one model call
MLSERVER_MAX_BATCH_SIZE, MLSERVER_MAX_BATCH_TIME = 8, 0.01


def mlserver(run: Run, tracking_uri: str, version: str) -> Container:
    """`mlserver start` with the kit's MLflow runtime on the model in the `models` volume
    (KServe's storage initializer fills it), logged in as the reader. The settings are
    MLServer's own environment variables (`MLSERVER_` server settings, `MLSERVER_MODEL_` model
    settings: mlserver/settings.py), which KServe passes to the container as they are."""
    env: dict[str, Value] = {
        "MLSERVER_MODEL_IMPLEMENTATION": MLSERVER_RUNTIME,
        "PYTHONPATH": MLSERVER_RUNTIME_PATH,
        "MLSERVER_MODEL_NAME": "{{.Name}}",  # KServe fills in the InferenceService's name
        "MLSERVER_MODEL_URI": InMount(MODELS),
        "MLSERVER_MODEL_EXTRA": json.dumps(MLSERVER_LIMITS),
        "MLSERVER_MODEL_MAX_BATCH_SIZE": str(MLSERVER_MAX_BATCH_SIZE),
        "MLSERVER_MODEL_MAX_BATCH_TIME": str(MLSERVER_MAX_BATCH_TIME),
        # gRPC refuses a larger message itself (grpc.max_receive_message_length)
        "MLSERVER_GRPC_MAX_MESSAGE_LENGTH": str(MLSERVER_LIMITS["max_body_bytes"]),
        "MLSERVER_HTTP_PORT": PORT,
        "MLSERVER_GRPC_PORT": "9000",
        "MLSERVER_METRICS_PORT": "8082",
        # the model in the server process: one copy in memory (a worker process would load a
        # copy each); the runtime runs it in a thread of its own, off the event loop
        "MLSERVER_PARALLEL_WORKERS": "0",
        **server_env(run, tracking_uri, version),
    }
    name = run.settings.registered_model_name
    return Container(
        name="kserve-container",
        image=MLSERVER,
        command=("mlserver", "start", InMount(MODELS)),
        env=env,
        secret_env={**HF_TOKEN, **READER_LOGIN},
        mounts={MODELS: True},
        port=SERVE_PORT,
        ready_path=f"/v2/models/{name}/ready",
    )

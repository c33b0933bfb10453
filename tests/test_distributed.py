"""More than one training process (issue: Kubeflow Trainer, torchrun).

Local profile, end to end: `-p nproc_per_node=2` runs the fine-tune under torchrun with two
CPU processes (gloo); one of them is killed after a checkpoint, the stage re-run resumes it
into the same MLflow run, and stage 04 registers it.

gke profile, dry run: more than one GPU or node renders a Kubeflow Trainer TrainJob, checked
against the Trainer's API models and the admission rules its webhooks apply (each rule's
source named beside it); one GPU on one node stays the plain Job.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import mlflow
import psutil
import pytest
from mlflow.tracking import MlflowClient

import tunekit
from tunekit import distributed
from tunekit.backends.gke import addons, workloads
from tunekit.credentials import child_environment
from tunekit.models import TINY_DIR
from tunekit.recipe import sft_arguments
from tunekit.run import recorded_run
from tunekit.settings import SettingsError, load_settings
from tunekit.stages import use_login

from .conftest import CLOUD_TOOLS, REPO, fake_tools, rendered, tunekit_cli, wait_for_checkpoint
from .schemas import validate

# torchrun starts processes of their own: `make test` runs this module after the parallel
# part, alone (two launches beside other tests' trainings once aborted a rank at exit)
pytestmark = pytest.mark.alone

MAX_STEPS, SAVE_STEPS, KILL_AFTER = 40, 10, 20
SETTINGS = [
    *("-p", "nproc_per_node=2", "-p", f"max_steps={MAX_STEPS}", "-p", f"save_steps={SAVE_STEPS}"),
    *("-p", "logging_steps=5", "-p", "synthetic_rows=800", "-p", "eval_size=24"),
    *("-p", "eval_set_rows=12"),
    *("-p", "experiment_name=ddp-test"),
]


# --- local: two processes under torchrun, one killed, resumed, registered


@pytest.fixture(scope="module")
def ddp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """Stages 01-04 with two training processes; rank 1 SIGKILLed after checkpoint KILL_AFTER;
    then 03-04 again."""
    run_dir = tmp_path_factory.mktemp("ddp") / "run"
    first = subprocess.Popen(
        [sys.executable, "-m", "tunekit", "run", "--stages", "01-04", "--run-dir", str(run_dir),
         *SETTINGS],
        cwd=REPO, env=child_environment({}), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True,
    )  # fmt: skip
    try:
        killed = _kill_a_worker_after_checkpoint(run_dir, KILL_AFTER, deadline_s=400)
        first_out, _ = first.communicate(timeout=120)
        second = tunekit_cli("run", "--stages", "03-04", "--run-dir", str(run_dir), *SETTINGS,
                             timeout=400)  # fmt: skip
        run = recorded_run(run_dir)
        yield {
            "run_dir": run_dir,
            "killed": killed,
            "first": (first.returncode, first_out),
            "second": second,
            "finetune": run.state.section("finetune"),
            "registry": run.state.section("registry"),
            "tracking_uri": run.state.section("mlflow")["tracking_uri"],
        }
    finally:
        first.kill()
        tunekit_cli("down", "--run-dir", str(run_dir))


def _kill_a_worker_after_checkpoint(run_dir: Path, step: int, deadline_s: float) -> dict:
    """SIGKILL torchrun's worker of rank 1 once checkpoint `step` is complete."""
    section, done = wait_for_checkpoint(run_dir, step, deadline_s)
    launcher = psutil.Process(section["pid"])
    workers = {w.environ().get("RANK"): w for w in launcher.children()}
    assert set(workers) == {"0", "1"}, workers  # torchrun started two processes
    workers["1"].send_signal(signal.SIGKILL)
    return {"step": done, "launcher": launcher.cmdline()}


@pytest.fixture
def client(ddp: dict) -> MlflowClient:
    use_login(recorded_run(ddp["run_dir"]))
    mlflow.set_tracking_uri(ddp["tracking_uri"])
    return MlflowClient(ddp["tracking_uri"])


@pytest.mark.e2e
def test_torchrun_launches_the_same_entry_point(ddp: dict) -> None:
    launcher = ddp["killed"]["launcher"]
    assert Path(launcher[1]).name == "torchrun"
    assert launcher[2:4] == ["-m", "tunekit.train"]


@pytest.mark.e2e
def test_a_killed_process_fails_the_stage_and_a_rerun_resumes_it(ddp: dict) -> None:
    returncode, output = ddp["first"]
    assert returncode != 0, output
    assert "re-run the stage to resume from its last checkpoint" in output
    second = ddp["second"]
    assert second.returncode == 0, second.stdout + second.stderr
    state = ddp["finetune"]
    assert state["status"] == "finished" and state["steps"] == MAX_STEPS
    assert state["resumed_from_step"] >= ddp["killed"]["step"] > 0


@pytest.mark.e2e
def test_one_mlflow_run_by_the_main_process(ddp: dict, client: MlflowClient) -> None:
    experiment = client.get_experiment_by_name("ddp-test")
    runs = client.search_runs([experiment.experiment_id])
    assert [r.info.run_id for r in runs] == [ddp["finetune"]["mlflow_run_id"]]
    run = runs[0]
    assert run.info.status == "FINISHED"
    assert run.data.params["world_size"] == "2"
    # 8 examples per process and step (the local profile), two processes, no accumulation
    assert run.data.params["effective_batch_size"] == "16"
    steps = sorted({m.step for m in client.get_metric_history(run.info.run_id, "loss")})
    assert steps == list(range(5, MAX_STEPS + 1, 5))  # continuous across the kill
    for prefix in ("", "validation_", "test_"):
        for model in ("base", "tuned"):
            assert 0.0 <= run.data.metrics[f"{prefix}{model}_execution_accuracy"] <= 1.0
    models = client.search_logged_models(
        [experiment.experiment_id], filter_string=f"source_run_id = '{run.info.run_id}'"
    )
    assert len(models) == 1  # the adapter, logged once


@pytest.mark.e2e
def test_stage_04_registers_the_distributed_run(ddp: dict, client: MlflowClient) -> None:
    registry = ddp["registry"]
    assert registry["run_id"] == ddp["finetune"]["mlflow_run_id"]
    version = client.get_model_version_by_alias(registry["registered_model_name"], "champion")
    assert version.run_id == ddp["finetune"]["mlflow_run_id"]


@pytest.mark.e2e
def test_other_processes_print_no_progress_of_their_own(ddp: dict) -> None:
    log = Path(ddp["finetune"]["log"]).read_text().split("\n--- ")[-1]
    steps = [line.split()[1] for line in log.splitlines() if line.startswith("step ")]
    assert len(steps) == len(set(steps))  # one line per logged step: the main process's
    assert log.count("tunekit: logging the evaluation and the adapter") == 1


# --- settings and the training arguments


def test_processes_default_to_one_locally_and_one_per_gpu_on_gke() -> None:
    assert load_settings().world_size == 1
    gke = load_settings(profile="gke", project_id="p", gpu_type="nvidia-l4", gpu_count=4,
                        gpu_machine_type="g2-standard-48", num_nodes=2)  # fmt: skip
    assert (gke.nproc_per_node, gke.world_size) == (4, 8)


@pytest.mark.parametrize(
    ("values", "named"),
    [
        ({"num_nodes": 2}, "num_nodes"),  # local: one machine
        ({"distributed_strategy": "fsdp"}, "distributed_strategy"),  # fsdp of one process
        ({"profile": "gke", "project_id": "p", "nproc_per_node": 2}, "nproc_per_node"),
        ({"distributed_strategy": "zero3"}, "distributed_strategy"),
    ],
)
def test_impossible_process_counts_are_refused_by_name(values: dict, named: str) -> None:
    with pytest.raises(SettingsError, match=named):
        load_settings(**values)


def test_one_process_keeps_the_fine_tunes_name_of_earlier_kits() -> None:
    """Settings added for distributed training leave a one-process job's digest unchanged."""
    one = load_settings()
    assert one.finetune_job == load_settings(nproc_per_node=1).finetune_job
    assert one.finetune_job != load_settings(nproc_per_node=2).finetune_job


def test_strategies_become_the_trainers_arguments(tmp_path: Path) -> None:
    one = sft_arguments(load_settings(), tmp_path, cuda=False)
    assert "fsdp" not in one and "ddp_backend" not in one
    ddp = sft_arguments(load_settings(nproc_per_node=2), tmp_path, cuda=False)
    assert ddp["ddp_backend"] == "gloo" and ddp["ddp_find_unused_parameters"] is False
    fsdp = sft_arguments(
        load_settings(nproc_per_node=2, distributed_strategy="fsdp"), tmp_path, cuda=True
    )
    assert fsdp["ddp_backend"] == "nccl" and fsdp["fsdp"] is True
    assert fsdp["fsdp_config"]["version"] == 2 and fsdp["activation_checkpointing"] is False
    # transformers takes them: TrainingArguments refuses an unknown fsdp_config key or argument
    from transformers import TrainingArguments

    accepted = set(TrainingArguments.__dataclass_fields__)
    assert {"fsdp", "fsdp_config", "ddp_backend", "ddp_find_unused_parameters"} <= accepted
    # LoRA-aware wrapping is the Trainer's own under FSDP: transformers/distributed/fsdp.py
    # `update_fsdp_plugin_peft` sets PEFT's `fsdp_auto_wrap_policy` (and a QLoRA base's
    # storage dtype), which the kit relies on rather than wrapping itself
    import inspect

    from transformers.distributed import fsdp as transformers_fsdp

    source = inspect.getsource(transformers_fsdp.update_fsdp_plugin_peft)
    assert "fsdp_auto_wrap_policy(model)" in source and "bnb_4bit_quant_storage" in source


def test_a_process_count_the_launcher_did_not_start_is_refused(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(load_settings(nproc_per_node=2, max_steps=1).to_yaml())
    done = subprocess.run(
        [sys.executable, "-m", "tunekit.train", "--config", str(config)],
        env=child_environment({}), capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode != 0
    assert "ask for 2 training process(es)" in done.stderr + done.stdout
    assert not (tmp_path / "mlflow_run_id").exists()  # refused before any MLflow run


def test_the_local_launcher_is_torchrun_standalone() -> None:
    env = distributed.standalone_env(load_settings(nproc_per_node=2))
    # torchrun reads each flag's default from PET_<FLAG> (torch/distributed/argparse_util.py
    # `env`, `check_env`); --standalone and --nproc-per-node are such flags (run.py)
    from torch.distributed.run import get_args_parser

    with pytest.MonkeyPatch.context() as patch:
        for name, value in env.items():
            patch.setenv(name, value)
        parsed = get_args_parser().parse_args(["-m", "tunekit.train"])
    assert parsed.standalone is True and parsed.nproc_per_node == "2"
    assert parsed.module is True and parsed.training_script == "tunekit.train"


# --- gke: the TrainJob


@pytest.fixture(scope="module")
def gke_distributed(tmp_path_factory: pytest.TempPathFactory) -> tunekit.Run:
    """Stages 01-03 of the gke dry run on two nodes of four L4 GPUs."""
    tmp = tmp_path_factory.mktemp("gke-ddp")
    path, calls = fake_tools(tmp, dict.fromkeys(CLOUD_TOOLS, "exit 1"))
    with pytest.MonkeyPatch.context() as env:
        env.setenv("PATH", path)
        env.setenv("HF_TOKEN", "hf_dry")
        env.setenv("TUNEKIT_RUNS_DIR", str(tmp / "runs"))
        run = tunekit.start_run(
            tmp / "run", profile="gke", dry_run=True, project_id="demo-project",
            gpu_count=4, gpu_machine_type="g2-standard-48", num_nodes=2,
        )  # fmt: skip
        for stage in (tunekit.create_cluster, tunekit.start_mlflow, tunekit.finetune):
            stage(run)
    assert not calls.exists(), f"a dry run called a cloud tool: {calls.read_text()}"
    return run


def _trainjob(run: tunekit.Run) -> dict:
    [found] = [o for o in rendered(run) if o["kind"] == "TrainJob"]
    return found


def test_more_than_one_gpu_renders_a_trainjob_that_validates(gke_distributed) -> None:
    kinds = [o["kind"] for o in rendered(gke_distributed)]
    assert "TrainJob" in kinds and "Job" not in kinds
    for obj in rendered(gke_distributed):
        validate(obj, workloads.K8S_VERSION)


def test_the_trainjob_runs_torchrun_on_the_gpu_pool(gke_distributed) -> None:
    s = gke_distributed.settings
    trainjob = _trainjob(gke_distributed)
    spec = trainjob["spec"]
    # kubeflow/trainer v2.3.0 manifests/base/runtimes/torch_distributed.yaml
    assert spec["runtimeRef"] == {
        "apiGroup": "trainer.kubeflow.org",
        "kind": "ClusterTrainingRuntime",
        "name": "torch-distributed",
    }
    trainer = spec["trainer"]
    assert trainer["command"] == ["torchrun", "-m", "tunekit.train"]
    assert (trainer["numNodes"], trainer["numProcPerNode"]) == (2, 4)
    assert trainer["resourcesPerNode"]["limits"]["nvidia.com/gpu"] == "4"
    assert trainer["resourcesPerNode"]["requests"]["nvidia.com/gpu"] == "4"
    [patch] = spec["runtimePatches"]
    [node] = patch["trainingRuntimeSpec"]["template"]["spec"]["replicatedJobs"]
    pod = node["template"]["spec"]["template"]
    assert pod["spec"]["nodeSelector"]["cloud.google.com/gke-accelerator"] == s.gpu_type
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod["spec"][
        "tolerations"
    ]
    assert pod["metadata"]["annotations"]["gke-gcsfuse/volumes"] == "true"
    assert pod["spec"]["serviceAccountName"] == workloads.TRAIN_SA


def test_the_trainjob_and_the_job_share_one_pod(tmp_path: Path) -> None:
    """Image, args, env, volumes, mounts, placement: the same as the single Job's."""
    from tunekit.run import Run

    base = {"profile": "gke", "project_id": "p", "gpu_count": 4,
            "gpu_machine_type": "g2-standard-48"}  # fmt: skip
    many = Run(tmp_path, load_settings(**base, num_nodes=2))
    trainjob = workloads.finetune_objects(many, "ft-x", "http://mlflow", "x: 1")[1]
    one = Run(tmp_path, load_settings(**base, nproc_per_node=1))
    job = workloads.finetune_objects(one, "ft-x", "http://mlflow", "x: 1")[1]
    pod_spec = job["spec"]["template"]["spec"]
    container = pod_spec["containers"][0]
    trainer = trainjob["spec"]["trainer"]
    patched = trainjob["spec"]["runtimePatches"][0]["trainingRuntimeSpec"]["template"]["spec"][
        "replicatedJobs"
    ][0]["template"]["spec"]["template"]["spec"]
    assert container["command"] == ["python", "-m", "tunekit.train"]
    for key in ("image", "args", "env"):
        assert trainer[key] == container[key], key
    for key in ("volumes", "nodeSelector", "tolerations", "serviceAccountName", "securityContext"):
        assert patched[key] == pod_spec[key], key
    assert patched["containers"][0]["volumeMounts"] == container["volumeMounts"]


def test_the_trainjob_obeys_the_trainers_admission_rules(gke_distributed) -> None:
    spec = _trainjob(gke_distributed)["spec"]
    name = _trainjob(gke_distributed)["metadata"]["name"]
    # JobSet's pod names <name>-node-0-<i>-xxxxx must be a DNS label <= 63 (jobset v0.12.0
    # pkg/webhooks/jobset_webhook.go): <= 48 characters for up to 10 nodes
    assert len(name) <= 48
    # the torch plugin refuses these in trainer.env (trainer v2.3.0 pkg/constants/constants.go
    # TorchRunReservedEnvNames; plugins/torch/torch.go Validate)
    reserved = {"PET_NNODES", "PET_NPROC_PER_NODE", "PET_NODE_RANK", "PET_MASTER_ADDR",
                "PET_MASTER_PORT"}  # fmt: skip
    assert not reserved & {e["name"] for e in spec["trainer"]["env"]}
    [patch] = spec["runtimePatches"]
    # plugins/jobset/jobset.go Validate: a domain-prefixed manager; replicated job and
    # container names the runtime has; no env on container `node` through a patch
    host, _, path = patch["manager"].partition("/")
    assert "." in host and path
    [node] = patch["trainingRuntimeSpec"]["template"]["spec"]["replicatedJobs"]
    assert node["name"] == "node"
    [container] = node["template"]["spec"]["template"]["spec"]["containers"]
    assert container["name"] == "node" and "env" not in container


def test_a_trainjob_name_too_long_for_its_nodes_is_refused() -> None:
    workloads.check_trainjob_name("ft-0123456789-1", 10)
    with pytest.raises(ValueError, match="at most 47 characters for 11 nodes"):
        workloads.check_trainjob_name("f" * 48, 11)


def test_schema_validation_catches_a_broken_trainjob(gke_distributed) -> None:
    trainjob = _trainjob(gke_distributed)
    trainjob["spec"]["trainer"]["numProcPerNode"] = "auto"  # an int since Trainer v2.2
    with pytest.raises(ValueError, match="numProcPerNode"):
        validate(trainjob, workloads.K8S_VERSION)
    trainjob = _trainjob(gke_distributed)
    trainjob["spec"]["podTemplateOverrides"] = []  # removed in v2.2 (runtimePatches instead)
    with pytest.raises(ValueError, match="podTemplateOverrides"):
        validate(trainjob, workloads.K8S_VERSION)


def test_the_stage_installs_the_trainer_where_the_cluster_lacks_it(gke_distributed) -> None:
    script = (gke_distributed.dir / "gke" / "commands.sh").read_text()
    manager = script.find(
        "-k 'github.com/kubeflow/trainer.git/manifests/overlays/manager?ref="
        + addons.TRAINER_VERSION
    )
    wait = script.find("kubectl wait deployment --all -n=kubeflow-system")
    runtimes = script.find("manifests/overlays/runtimes?ref=" + addons.TRAINER_VERSION)
    job = script.find("03-finetune-job.yaml")
    assert -1 < manager < wait < runtimes < job


def test_terraform_sizes_the_gpu_pool_for_the_nodes(gke_distributed) -> None:
    variables = json.loads((gke_distributed.dir / "gke" / "terraform.tfvars.json").read_text())
    assert (variables["gpu_count"], variables["num_nodes"]) == (4, 2)
    assert variables["gpu_machine_type"] == "g2-standard-48"


def test_a_sweep_of_distributed_trials_is_refused(tmp_path: Path) -> None:
    from tunekit.backends.gke import katib
    from tunekit.run import Run
    from tunekit.sweep import Sweep

    settings = load_settings(profile="gke", project_id="p", gpu_count=4,
                             gpu_machine_type="g2-standard-48")  # fmt: skip
    sweep = Sweep(settings, {"lora_r": ("8", "16")})
    with pytest.raises(ValueError, match="single-process Jobs"):
        katib.experiment(Run(tmp_path, settings), sweep, "http://mlflow", "parent")


# --- local: FSDP (two CPU processes, gloo): the adapter gathered, evaluated once


@pytest.fixture(scope="module")
def fsdp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    run_dir = tmp_path_factory.mktemp("fsdp") / "run"
    done = tunekit_cli(
        "run", "--stages", "01-03", "--run-dir", str(run_dir), "-p", "nproc_per_node=2",
        "-p", "distributed_strategy=fsdp", "-p", "max_steps=10", "-p", "save_steps=5",
        "-p", "logging_steps=5", "-p", "synthetic_rows=400", "-p", "eval_size=20",
        "-p", "eval_set_rows=12",
        timeout=600,
    )  # fmt: skip
    try:
        yield {"done": done, "finetune": recorded_run(run_dir).state.section("finetune")}
    finally:
        tunekit_cli("down", "--run-dir", str(run_dir))


@pytest.mark.e2e
def test_fsdp_gathers_the_whole_adapter_and_evaluates_it_once(fsdp: dict) -> None:
    from safetensors.torch import load_file

    assert fsdp["done"].returncode == 0, fsdp["done"].stdout + fsdp["done"].stderr
    state = fsdp["finetune"]
    assert state["status"] == "finished" and state["steps"] == 10
    log = Path(state["log"]).read_text()
    assert log.count("tunekit: evaluating the base and the tuned model") == 1
    # every process took part in saving it whole (FULL_STATE_DICT): full shapes, trained B
    weights = load_file(Path(state["job_dir"]) / "adapter" / "adapter_model.safetensors")
    layers = json.loads((TINY_DIR / "config.json").read_text())["num_hidden_layers"]
    assert len(weights) == 2 * 7 * layers  # A and B of 7 linear layers in each decoder layer
    assert weights["base_model.model.model.layers.0.mlp.down_proj.lora_B.weight"].shape == (
        128,
        16,
    )
    assert max(float(w.abs().max()) for k, w in weights.items() if "lora_B" in k) > 0

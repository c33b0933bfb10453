# ruff: noqa: E501  (markdown tables are one line per row)
"""Write the stage notebooks from their source here: `python tools/build_notebooks.py notebooks`.

The notebooks in notebooks/ are committed as this script writes them (no outputs, stable cell
ids); edit the text here and re-run it, or edit a notebook and carry the change over.
"""

import tomllib
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

# The one setting behind every launch badge and the setup cell: `[tool.tunekit] github`.
GITHUB = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())["tool"][
    "tunekit"
]["github"]
ORG_REPO, REF = GITHUB.rsplit("/", 1)


def badges(name: str) -> str:
    """Open in Colab, Open in Vertex AI Workbench, View on GitHub: for notebooks/<name>.ipynb."""
    path = f"notebooks/{name}.ipynb"
    raw = f"https://raw.githubusercontent.com/{ORG_REPO}/{REF}/{path}"
    links = [
        ("Open in Colab", "https://colab.research.google.com/assets/colab-badge.svg",
         f"https://colab.research.google.com/github/{ORG_REPO}/blob/{REF}/{path}"),
        ("Open in Vertex AI Workbench",
         "https://img.shields.io/badge/Open%20in-Vertex%20AI%20Workbench-4285F4?logo=googlecloud",
         f"https://console.cloud.google.com/vertex-ai/workbench/deploy-notebook?download_url={raw}"),
        ("View on GitHub", "https://img.shields.io/badge/View%20on-GitHub-181717?logo=github",
         f"https://github.com/{ORG_REPO}/blob/{REF}/{path}"),
    ]  # fmt: skip
    return " ".join(f"[![{text}]({image})]({url})" for text, image, url in links)


SETUP_MD = """### Set up Colab or Vertex AI Workbench

Launched from a badge above, the notebook runs without a checkout of tunekit: the next cell
installs the kit from GitHub and, on Colab, signs you in to Google Cloud (needed for the `gke`
profile). In a checkout (JupyterLab, `tunekit run`, papermill) tunekit is already installed and
the cell does nothing."""

SETUP = f"""import importlib.util
import sys

if importlib.util.find_spec("tunekit") is None:  # Colab, Vertex AI Workbench
    %pip install --quiet "tunekit @ git+https://github.com/{ORG_REPO}@{REF}"
    if "google.colab" in sys.modules:
        from google.colab import auth

        auth.authenticate_user()"""


def launchable(name: str, book):
    """Badges under the title; the setup cell before the parameters."""
    title = book.cells[0]
    first, rest = title.source.split("\n", 1)
    title.source = f"{first}\n\n{badges(name)}\n{rest}"
    at = next(i for i, c in enumerate(book.cells) if c.source == PARAMS_MD)
    book.cells[at:at] = [new_markdown_cell(SETUP_MD), new_code_cell(SETUP)]
    for i, c in enumerate(book.cells):
        c["id"] = f"cell-{i:02d}"
    return book

PARAMS_MD = """### Set the parameters

`tunekit run -p key=value` (papermill) replaces the values of the next cell; edit them when you
run this notebook by hand. Secrets such as `HF_TOKEN` are never parameters: they come from the
environment."""


def params(first: bool) -> str:
    where = "start a new run under runs/" if first else "the latest run under runs/"
    return (
        f'run_dir = ""  # the run to use; empty: {where}\n'
        'profile = ""  # "local" or "gke"; empty: $TUNEKIT_PROFILE, else "local"\n'
        'settings = {}  # other settings, e.g. {"experiment_name": "demo"}; see `tunekit settings`'
    )


def nb(cells):
    out = new_notebook()
    out.metadata = {
        "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
        "language_info": {"name": "python"},
    }
    for kind, src, *tags in cells:
        c = new_markdown_cell(src) if kind == "md" else new_code_cell(src)
        if tags:
            c.metadata["tags"] = tags
        out.cells.append(c)
    # stable, diff-friendly ids
    for i, c in enumerate(out.cells):
        c["id"] = f"cell-{i:02d}"
    return out


# The later stages' "Open the run" cell.
OPEN_RUN = """import tunekit

run = tunekit.open_run(run_dir, profile=profile, **settings)
run"""

# The tutorial's style of question (tunekit.serving.EXAMPLE), as parameters of 05 and 06.
EXAMPLE_PARAMETERS = """
question = "What is the total number of points when the opponent is utah jazz?"
context = "CREATE TABLE table_name_12 (points INTEGER, opponent VARCHAR)\""""

# How 05 and 06 show the answer of `tunekit.ask`.
SHOW_ANSWER = """
print(f"Q:   {answer['question']}")
print(f"SQL: {answer['sql']}   (model version {answer['model_version']})")"""

COST_LOCAL = "The `local` profile runs on this machine and costs nothing."

NB = {}
NB["01-cluster"] = nb(
    [
        (
            "md",
            """# 01 · Cluster and bucket

Stage 1 of 7 of **tunekit**: fine-tune Gemma-2 with LoRA as a tracked MLflow experiment, register
the best run, and serve it with FastAPI and KServe.

## Overview

This notebook lays the ground the other stages stand on: a place to run workloads and a Cloud
Storage bucket for MLflow's artifacts (adapters, checkpoints, evaluation tables).

| profile | what this stage does |
|---|---|
| `local` (default) | starts a GCS emulator (`gcp-storage-emulator`) whose objects persist under the run directory, and creates the bucket with the real `google-cloud-storage` client |
| `gke` | `terraform apply`: a GKE Standard cluster with a GPU node pool, the bucket, Artifact Registry and Workload Identity; then cluster credentials and a check that GPU nodes are ready |

### Objective

- Create the run directory `runs/<run-id>/`. Its `state.json` is the only hand-off between stages.
- Start (or reuse) the storage backend and create the artifact bucket.

### Costs

"""
            + COST_LOCAL
            + """ On `gke` this stage creates billable resources: the GKE cluster
management fee (about $0.10 per cluster-hour), the GPU node pool (for example one `g2-standard-8`
with an NVIDIA L4, roughly $0.85 per hour on demand, less on Spot) and Cloud Storage (cents per
GB-month). Check your region with the [pricing calculator](https://cloud.google.com/products/calculator),
and run `07-cleanup` when you are done.

## Before you begin

On `gke`, try the series first as a dry run: `settings = {"dry_run": True, "project_id": "..."}`
(or `tunekit run --profile gke -p dry_run=true -p project_id=...`) touches no cloud; every
stage prints its commands and writes the manifests it would apply into `runs/<run-id>/gke/`.
The real run needs `gcloud` logged in, `terraform`, `kubectl`, `helm`, and `HF_TOKEN` in the
environment for the gated Gemma weights.""",
        ),
        ("md", PARAMS_MD),
        ("code", params(True), "parameters"),
        (
            "md",
            """### Open the run

The settings are validated before anything starts: a bad value stops here, naming the setting
and what it allows.""",
        ),
        (
            "code",
            """import tunekit

run = tunekit.start_run(run_dir, profile=profile, **settings)
run""",
        ),
        (
            "md",
            """## Create the cluster and the bucket

Locally this starts the storage emulator and creates the bucket through the same client code
that talks to Cloud Storage on GKE. Re-running the cell is safe: a healthy emulator is reused.""",
        ),
        (
            "code",
            """cluster = tunekit.create_cluster(run)
cluster""",
        ),
        (
            "md",
            """## What the next stage finds

Everything later stages need is recorded in the run's `state.json`: the settings, the bucket,
and the services with their process ids, ports and log files.""",
        ),
        ("code", """run.state.read()"""),
        (
            "md",
            """## Cleaning up

Leave the platform up for the next stages. When you are done, run `07-cleanup` (or `make down`):
locally it stops the emulator and keeps the data; on GKE it destroys the cluster.""",
        ),
    ]
)

NB["02-mlflow"] = nb(
    [
        (
            "md",
            """# 02 · MLflow tracking server

Stage 2 of 7 of **tunekit**. Stage 01 left a run directory and an artifact bucket.

## Overview

Every fine-tune becomes an MLflow run: parameters, metrics, datasets, the LoRA adapter and
evaluation tables. This stage starts the tracking server that records them, with its artifacts
in the bucket from stage 01, so that the best run is never lost with a laptop or a pod.

| profile | what this stage does |
|---|---|
| `local` (default) | `mlflow server` with basic auth and a SQLite backend in the run directory (`mlflow_backend="postgresql"`: a PostgreSQL server there) and `--artifacts-destination gs://<bucket>/mlflow` on the emulator: the server proxies artifact uploads and downloads |
| `gke` | Cloud Build builds the kit's images; MLflow's Helm chart: PostgreSQL backend, artifacts in the GCS bucket through the server, basic auth from Secrets; reached through a port-forward |

The server asks for a login, as the cluster's does. Its admin password is generated for this run
and kept out of this notebook: locally in `secrets.json` of the run directory (readable by you
only), on GKE in a Kubernetes Secret. Every stage logs in from there by itself.

### Objective

- Start (or reuse) the tracking server and wait until its `/health` answers.
- Create the experiment the fine-tunes of stage 03 will log to.
- Prove that an artifact logged through the server lands in the bucket.

### Costs

"""
            + COST_LOCAL
            + """ On `gke` the server runs on the cluster's CPU pool and its database on a
small persistent disk: a few cents per hour on top of stage 01.

## Before you begin""",
        ),
        ("md", PARAMS_MD),
        ("code", params(False), "parameters"),
        ("md", """### Open the run"""),
        (
            "code",
            OPEN_RUN,
        ),
        (
            "md",
            """## Start the tracking server

This waits for the server's health check, with a timeout (`service_timeout_s`) and an error that
points at the server's log. Re-running the cell reuses a healthy server.""",
        ),
        (
            "code",
            """tracking = tunekit.start_mlflow(run)
tracking""",
        ),
        (
            "md",
            """## Check that artifacts reach the bucket

A small file goes through the tracking server into the bucket and is found there again with the
`google-cloud-storage` client. The check is logged to its own experiment,
`tunekit-platform-checks`, so it never competes with the fine-tunes.""",
        ),
        ("code", """tunekit.verify_artifact_store(run)"""),
        (
            "md",
            """## Open the MLflow UI

The experiment is empty until stage 03 logs the first fine-tune. The UI asks for the admin's
login: `make ui` (or `tunekit ui`) in a terminal prints it.""",
        ),
        ("code", """print(f"MLflow UI: {tracking['ui_url']}")"""),
        (
            "md",
            """## Cleaning up

Leave the server up for the next stages; `07-cleanup` (or `make down`) stops it. Its data stays
in the run directory and the bucket: `make ui` reopens the UI on it later.""",
        ),
    ]
)

NB["03-finetune"] = nb(
    [
        (
            "md",
            """# 03 · Fine-tune with LoRA

Stage 3 of 7 of **tunekit**. Stage 02 left an MLflow tracking server, with its artifacts in the
bucket, and an empty experiment.

## Overview

This stage fine-tunes the base model with LoRA to answer questions about tables in SQL, with
TRL's `SFTTrainer` and PEFT, and tracks the fine-tune as one MLflow run: every hyperparameter,
the loss curve, the train and eval datasets, system metrics, the adapter as an MLflow model, and
an evaluation of the base and the tuned model on held-out rows. Runs are compared by that
evaluation in stage 04, so the best one is never lost.

| profile | what this stage does |
|---|---|
| `local` (default) | runs `python -m tunekit.train` as a subprocess: `tiny-gemma2` (a small Gemma-2 built for the CPU) on synthetic rows, about three minutes on two cores |
| `gke` | runs the same module as a Kubernetes Job on a GPU node: `google/gemma-2-9b` on `b-mc2/sql-create-context` |

Re-running the stage with the same settings reuses the finished fine-tune; if it stopped half-way
it resumes from its last checkpoint, in the same MLflow run. Changed settings start a new run.

### Objective

- Train a LoRA adapter and log it, with everything needed to reproduce it, to MLflow.
- Measure exact match and execution accuracy of the base and the tuned model.

### Dataset

[`b-mc2/sql-create-context`](https://huggingface.co/datasets/b-mc2/sql-create-context) (CC BY 4.0):
78,577 rows of a question, the `CREATE TABLE` statements it is about, and the SQL that answers
it. Locally, `synthetic` generates rows in the same format with a seeded generator, every answer
valid SQLite. A local `.json`, `.jsonl` or `.parquet` file of such rows works too.

### Costs

"""
            + COST_LOCAL
            + """ On `gke` it bills GPU node time: for example an NVIDIA L4 node
(`g2-standard-8`) at roughly $0.85 per hour on demand, or an A100 40GB (`a2-highgpu-1g`) at
roughly $3.70; a 500-step LoRA fine-tune of gemma-2-9b takes in the order of tens of minutes.

## Before you begin""",
        ),
        ("md", PARAMS_MD),
        (
            "code",
            params(False)
            + """
model_id = ""  # "tiny-gemma2", a Hub id like "google/gemma-2-9b" or a local directory
dataset = ""  # "synthetic", a Hub id, or a .json/.jsonl/.parquet file
max_steps = None  # optimizer steps (local profile: 2000)
learning_rate = None  # peak learning rate (local profile: 2e-3)
lora_r = None  # LoRA rank (16)
# empty or None: the run's setting, else the profile's""",
            "parameters",
        ),
        (
            "md",
            """### Open the run

The knobs above join the run's settings; `tunekit settings` lists all of them.""",
        ),
        (
            "code",
            """import tunekit

knobs = dict(model_id=model_id, dataset=dataset, max_steps=max_steps,
             learning_rate=learning_rate, lora_r=lora_r)
run = tunekit.open_run(run_dir, profile=profile, **knobs, **settings)
run""",
        ),
        (
            "md",
            """## Look at the data

Each row becomes a prompt (the `CREATE TABLE` context and the question) and a completion (the
SQL, then the end-of-sequence token). The same template serves training, evaluation and both
servers.""",
        ),
        ("code", """tunekit.preview_examples(run, 3)"""),
        (
            "md",
            """## Fine-tune

Progress lines stream below while the trainer runs. Everything it prints goes to the log file
named in the first line.""",
        ),
        (
            "code",
            """result = tunekit.finetune(run)
{k: result[k] for k in ("mlflow_run_id", "steps", "eval_loss", "model_uri")}""",
        ),
        (
            "md",
            """## Look at the training curves

Read back from MLflow: the loss on the SQL tokens and the learning-rate schedule.""",
        ),
        ("code", """tunekit.plots.training_curves(run)"""),
        (
            "md",
            """## Compare the base and the tuned model

Both answered the held-out questions. Exact match compares normalised SQL; execution accuracy
runs the predicted and the gold SQL on SQLite tables filled to tell them apart.""",
        ),
        ("code", """tunekit.plots.base_vs_tuned(run)"""),
        (
            "md",
            """## Open the run in MLflow

Params, metrics, the two datasets, system metrics, the evaluation table and the logged adapter
model are all on the run's page.""",
        ),
        ("code", """print(f"MLflow run: {tunekit.plots.run_link(run)}")"""),
        (
            "md",
            """## Cleaning up

The fine-tune leaves nothing running. Its checkpoints stay under the run directory; the adapter
and everything else is in MLflow. `07-cleanup` stops the platform.""",
        ),
    ]
)

NB["07-cleanup"] = nb(
    [
        (
            "md",
            """# 07 · Cleaning up

Stage 7 of 7 of **tunekit**. The earlier stages left services (and, on GKE, cloud resources)
running; this one ends them.

## Overview

| profile | what this stage does |
|---|---|
| `local` (default) | stops every process the run's state records (MLflow server, GCS emulator, serving processes); the run directory stays, so `make ui` can reopen the MLflow UI on its data |
| `gke` | deletes the workloads, uninstalls the Helm release and runs `terraform destroy` |

Running it twice is fine: what is already stopped is skipped.

### Objective

- Stop everything this run started, and check that nothing is left running.

### Costs

This stage ends the charges of the earlier ones. On `gke`, check the console afterwards for
resources created outside tunekit.

## Before you begin""",
        ),
        ("md", PARAMS_MD),
        ("code", params(False), "parameters"),
        ("md", """### Open the run"""),
        (
            "code",
            OPEN_RUN,
        ),
        ("md", """## Stop everything"""),
        ("code", """tunekit.cleanup(run)"""),
        ("md", """## Check that nothing is left running"""),
        (
            "code",
            """left = tunekit.running_services(run)
assert not left, f"still running: {sorted(left)}"
print(f"Nothing of run {run.id} is running; its data stays in {run.dir}")""",
        ),
    ]
)

NB["04-registry"] = nb(
    [
        (
            "md",
            """# 04 · Register the best run

Stage 4 of 7 of **tunekit**. Stage 03 left one or more fine-tunes in the MLflow experiment, each
with its LoRA adapter logged as a model and an evaluation of it on held-out rows.

## Overview

Data scientists run many fine-tunes; this stage makes sure the best one is never lost. It
compares every finished fine-tune of the experiment by measured quality, registers the best one's
model in the MLflow Model Registry and points the alias `champion` at that version. Stages 05 and
06 serve `models:/<name>@champion`, so they serve exactly what this stage chose.

| profile | what this stage does |
|---|---|
| `local` (default) | the Model Registry of the local MLflow server |
| `gke` | the same, on the tracking server in the cluster |

### Objective

- Compare the experiment's fine-tunes: a table and a picture.
- Choose the best by execution accuracy of the tuned model (ties: the lower eval loss), or the run
  you pin, and register it with the alias `champion`. Registering the same run again reuses its
  version.

### Costs

"""
            + COST_LOCAL
            + """ On `gke` this stage only talks to the tracking server; it adds no
resources.

## Before you begin""",
        ),
        ("md", PARAMS_MD),
        (
            "code",
            params(False)
            + """
pin_run_id = ""  # an MLflow run id to register instead of the best run; empty: the best""",
            "parameters",
        ),
        ("md", """### Open the run"""),
        (
            "code",
            """import tunekit

run = tunekit.open_run(run_dir, profile=profile, pin_run_id=pin_run_id, **settings)
run""",
        ),
        (
            "md",
            """## Compare the fine-tunes

Best first. `tuned_execution_accuracy` runs the model's SQL and the gold SQL on SQLite tables and
compares their results; `eval_loss` is the loss on the held-out rows.""",
        ),
        ("code", """tunekit.compare_runs(run)"""),
        (
            "md",
            """The same runs as a picture: execution accuracy on the left, eval loss on the right.
In JupyterLab, pick the runs to compare in the list (Ctrl/Shift-click); headless, every run is
drawn.""",
        ),
        ("code", """tunekit.plots.choose_runs(run)"""),
        (
            "md",
            """## Register the champion

The chosen run's adapter model becomes a version of the registered model, tagged with its
evaluation, and the alias `champion` moves to it.""",
        ),
        (
            "code",
            """registered = tunekit.register_model(run)
accuracy = registered["tuned_execution_accuracy"]
print(f"{registered['model_uri']} is version {registered['version']} ({accuracy:.1%})")
print(f"Registered from run {registered['run_id']}")
print(f"Model page: {registered['ui_url']}")""",
        ),
        (
            "md",
            """## Cleaning up

Registering starts nothing. The registered model stays in MLflow; `07-cleanup` stops the
servers.""",
        ),
    ]
)

NB["05-deploy-simple"] = nb(
    [
        (
            "md",
            """# 05 · Serve the champion with FastAPI

Stage 5 of 7 of **tunekit**. Stage 04 registered the best fine-tune as a version of the
registered model and pointed the alias `champion` at it.

## Overview

This stage serves exactly that version behind a small HTTP API, `tunekit.serve` (FastAPI under
uvicorn). It loads `models:/<name>@champion` once at start-up: the LoRA adapter from MLflow and
its base model. Requests that arrive together share one `generate` call, so the server answers
more requests per second the more clients it has.

| profile | what this stage does |
|---|---|
| `local` (default) | starts `python -m tunekit.serve` as a managed local service (logged, reused, stopped by 07) |
| `gke` | rolls out the same command as a Deployment and Service, probes on `/healthz` and `/readyz` |

The API: `POST /predict` with `{"question": ..., "context": ...}` (or `{"prompt": ...}`), and the
tutorial's `GET /predict?message=...`; `GET /healthz`, `GET /readyz`; OpenAPI docs at `/docs`.

### Objective

- Start the server on the champion and wait until the model is loaded.
- Ask it a question about a table, and show the `curl` command that does the same.

### Costs

"""
            + COST_LOCAL
            + """ On `gke` the Deployment holds a GPU node while it runs (see 03 for
prices); `07-cleanup` removes it.

## Before you begin""",
        ),
        ("md", PARAMS_MD),
        (
            "code",
            params(False) + EXAMPLE_PARAMETERS,
            "parameters",
        ),
        ("md", """### Open the run"""),
        (
            "code",
            OPEN_RUN,
        ),
        (
            "md",
            """## Start the server

Returns once `/readyz` answers: the model is loaded. A server already running on the same
champion is reused.""",
        ),
        (
            "code",
            """server = tunekit.deploy_simple(run)["fastapi"]
print(f"Serving {server['model_uri']} (version {server['model_version']}) at {server['url']}")
print(f"API docs: {server['docs']}")""",
        ),
        ("md", """## Ask a question"""),
        (
            "code",
            "answer = tunekit.ask(run, question, context)" + SHOW_ANSWER,
        ),
        ("md", """The same request from a terminal:"""),
        ("code", """print(answer["curl"])"""),
        (
            "md",
            """## Cleaning up

The server keeps running for you to try; `07-cleanup` (or `make down`) stops it.""",
        ),
    ]
)

NB["06-deploy-kserve"] = nb(
    [
        (
            "md",
            """# 06 · Serve the champion with MLServer (KServe V2)

Stage 6 of 7 of **tunekit**. Stage 04 registered the champion; stage 05 serves it with FastAPI.

## Overview

KServe serves MLflow models with **MLServer** and its MLflow runtime, speaking the Open Inference
(V2) protocol. This stage serves the same registered version that way: MLServer loads
`models:/<name>/<version>` of the champion with `mlserver-mlflow`, and answers
`POST /v2/models/<name>/infer`. With greedy decoding it returns the same text as stage 05.

| profile | what this stage does |
|---|---|
| `local` (default) | writes a model-settings file into the run directory and starts `mlserver start` on it as a managed local service (MLServer has its own environment, `.venv-mlserver`) |
| `gke` | applies a KServe `InferenceService` (V2 protocol) whose `storageUri` is the registered version, on an MLServer image with the model's dependencies baked in |

### Objective

- Start MLServer on the champion and wait until the model is ready.
- Send a V2 inference request like the tutorial's `input.json`, and compare with stage 05.

### Costs

"""
            + COST_LOCAL
            + """ On `gke` the InferenceService holds a GPU node while it runs; `07-cleanup`
removes it.

## Before you begin""",
        ),
        ("md", PARAMS_MD),
        (
            "code",
            params(False) + EXAMPLE_PARAMETERS,
            "parameters",
        ),
        ("md", """### Open the run"""),
        (
            "code",
            OPEN_RUN,
        ),
        (
            "md",
            """## Start MLServer

Returns once `/v2/models/<name>/ready` answers. A server already running on the same champion
is reused.""",
        ),
        (
            "code",
            """server = tunekit.deploy_kserve(run)["mlserver"]
print(f"Serving {server['model_uri']} (version {server['model_version']})")
print(f"V2 endpoint: {server['infer_url']}")""",
        ),
        ("md", """## Ask a question over the V2 protocol"""),
        (
            "code",
            'answer = tunekit.ask(run, question, context, server="mlserver")' + SHOW_ANSWER,
        ),
        ("md", """The same request from a terminal:"""),
        ("code", """print(answer["curl"])"""),
        (
            "md",
            """## Compare with stage 05

Where the FastAPI server of stage 05 is running, it answers the same question with the same
text: both serve the same version, greedily.""",
        ),
        (
            "code",
            """if "fastapi" in tunekit.running_services(run):
    simple = tunekit.ask(run, question, context, server="fastapi")
    print(f"FastAPI: {simple['sql']}")
    print(f"same answer: {simple['sql'] == answer['sql']}")""",
        ),
        (
            "md",
            """## Cleaning up

MLServer keeps running for you to try; `07-cleanup` (or `make down`) stops it and the FastAPI
server.""",
        ),
    ]
)

if __name__ == "__main__":
    import sys

    for name, book in NB.items():
        book = launchable(name, book)
        nbformat.validate(book)
        nbformat.write(book, f"{sys.argv[1]}/{name}.ipynb")
        print("wrote", name)

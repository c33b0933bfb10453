# ---
# jupyter:
#   jupytext:
#     notebook_metadata_filter: -jupytext.text_representation.jupytext_version
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 01 · Cluster and bucket
#
# [![Open in Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/tunekit-dev/tunekit/blob/main/notebooks/01-cluster.ipynb) [![Open in Vertex AI Workbench](https://img.shields.io/badge/Open%20in-Vertex%20AI%20Workbench-4285F4?logo=googlecloud)](https://console.cloud.google.com/vertex-ai/workbench/deploy-notebook?download_url=https://raw.githubusercontent.com/tunekit-dev/tunekit/main/notebooks/01-cluster.ipynb) [![View on GitHub](https://img.shields.io/badge/View%20on-GitHub-181717?logo=github)](https://github.com/tunekit-dev/tunekit/blob/main/notebooks/01-cluster.ipynb)
#
# Stage 1 of 7 of **tunekit**: fine-tune Gemma-2 with LoRA as a tracked MLflow experiment, register
# the best run, and serve it with FastAPI and KServe.
#
# ## Overview
#
# This notebook lays the ground the other stages stand on: a place to run workloads and a Cloud
# Storage bucket for MLflow's artifacts (adapters, checkpoints, evaluation tables).
#
# | profile | what this stage does |
# |---|---|
# | `local` (default) | starts a GCS emulator (`gcp-storage-emulator`) whose objects persist under the run directory, and creates the bucket with the real `google-cloud-storage` client |
# | `gke` | `terraform apply`: a GKE Standard cluster with a GPU node pool, the bucket, Artifact Registry and Workload Identity; then cluster credentials and a check that GPU nodes are ready |
#
# ### Objective
#
# - Create the run directory `runs/<run-id>/`. Its `state.json` is the only hand-off between stages.
# - Start (or reuse) the storage backend and create the artifact bucket.
#
# ### Costs
#
# The `local` profile runs on this machine and costs nothing. On `gke` this stage creates billable resources: the GKE cluster
# management fee (about $0.10 per cluster-hour), the GPU node pool (for example one `g2-standard-8`
# with an NVIDIA L4, roughly $0.85 per hour on demand, less on Spot) and Cloud Storage (cents per
# GB-month). Check your region with the [pricing calculator](https://cloud.google.com/products/calculator),
# and run `07-cleanup` when you are done.
#
# ## Before you begin
#
# On `gke`, try the series first as a dry run: `settings = {"dry_run": True, "project_id": "..."}`
# (or `tunekit run --profile gke -p dry_run=true -p project_id=...`) touches no cloud; every
# stage prints its commands and writes the manifests it would apply into `runs/<run-id>/gke/`.
# The real run needs `gcloud` logged in, `terraform`, `kubectl`, `helm`, and `HF_TOKEN` in the
# environment for the gated Gemma weights.

# %% [markdown]
# ### Set up Colab or Vertex AI Workbench
#
# Launched from a badge above, the notebook runs without a checkout of tunekit: the next cell
# installs the kit from GitHub and, on Colab, signs you in to Google Cloud (needed for the `gke`
# profile). In a checkout (JupyterLab, `tunekit run`, papermill) tunekit is already installed and
# the cell does nothing.

# %%
import importlib.util
import sys

if importlib.util.find_spec("tunekit") is None:  # Colab, Vertex AI Workbench
    # %pip install --quiet "tunekit @ git+https://github.com/tunekit-dev/tunekit@main"
    if "google.colab" in sys.modules:
        from google.colab import auth

        auth.authenticate_user()

# %% [markdown]
# ### Set the parameters
#
# `tunekit run -p key=value` (papermill) replaces the values of the next cell; in JupyterLab or
# Colab edit them as a form. Empty (or None) means: the run's setting, else the environment's,
# else the profile's (`tunekit settings` lists every setting and its source).
#
# - `run_dir`: the run to use; empty: start a new run under runs/
# - `profile`: `local` or `gke`; empty: `$TUNEKIT_PROFILE`, else `local`
# - `project_id`, `region` (gke): empty: `$GOOGLE_CLOUD_PROJECT` and `$GOOGLE_CLOUD_REGION`
#   (Colab and Workbench set the project), else region `us-central1`
# - `settings`: any other setting, e.g. `{"experiment_name": "demo"}`
#
# Secrets such as `HF_TOKEN` are never parameters: they come from the environment.

# %% tags=["parameters"]
run_dir = ""  # @param {type:"string"}
profile = ""  # @param ["", "local", "gke"]
project_id = ""  # @param {type:"string"}
region = ""  # @param {type:"string"}
settings = {}  # @param {type:"raw"}

# %% [markdown]
# ### Open the run
#
# The settings are validated before anything starts: a bad value stops here, naming the setting
# and what it allows.

# %%
import tunekit

run = tunekit.start_run(run_dir, profile=profile, project_id=project_id, region=region,
                        **settings)
run

# %% [markdown]
# ## Create the cluster and the bucket
#
# Locally this starts the storage emulator and creates the bucket through the same client code
# that talks to Cloud Storage on GKE. Re-running the cell is safe: a healthy emulator is reused.

# %%
cluster = tunekit.create_cluster(run)
cluster

# %% [markdown]
# ## What the next stage finds
#
# Everything later stages need is recorded in the run's `state.json`: the settings, the bucket,
# and the services with their process ids, ports and log files.

# %%
run.state.read()

# %% [markdown]
# ## Cleaning up
#
# Leave the platform up for the next stages. When you are done, run `07-cleanup` (or `make down`):
# locally it stops the emulator and keeps the data; on GKE it destroys the cluster.

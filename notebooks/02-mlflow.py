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
# # 02 · MLflow tracking server
#
# [![Open in Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/tunekit-dev/tunekit/blob/main/notebooks/02-mlflow.ipynb) [![Open in Vertex AI Workbench](https://img.shields.io/badge/Open%20in-Vertex%20AI%20Workbench-4285F4?logo=googlecloud)](https://console.cloud.google.com/vertex-ai/workbench/deploy-notebook?download_url=https://raw.githubusercontent.com/tunekit-dev/tunekit/main/notebooks/02-mlflow.ipynb) [![View on GitHub](https://img.shields.io/badge/View%20on-GitHub-181717?logo=github)](https://github.com/tunekit-dev/tunekit/blob/main/notebooks/02-mlflow.ipynb)
#
# Stage 2 of 7 of **tunekit**. Stage 01 left a run directory and an artifact bucket.
#
# ## Overview
#
# Every fine-tune becomes an MLflow run: parameters, metrics, datasets, the LoRA adapter and
# evaluation tables. This stage starts the tracking server that records them, with its artifacts
# in the bucket from stage 01, so that the best run is never lost with a laptop or a pod.
#
# | profile | what this stage does |
# |---|---|
# | `local` (default) | `mlflow server` with basic auth and a SQLite backend in the run directory (`mlflow_backend="postgresql"`: a PostgreSQL server there) and `--artifacts-destination gs://<bucket>/mlflow` on the emulator: the server proxies artifact uploads and downloads |
# | `gke` | Cloud Build builds the kit's images; MLflow's Helm chart: PostgreSQL backend, artifacts in the GCS bucket through the server, basic auth from Secrets; reached through a port-forward |
#
# The server asks for a login, as the cluster's does. Its admin password is generated for this run
# and kept out of this notebook: locally in `secrets.json` of the run directory (readable by you
# only), on GKE in a Kubernetes Secret. Every stage logs in from there by itself.
#
# ### Objective
#
# - Start (or reuse) the tracking server and wait until its `/health` answers.
# - Create the experiment the fine-tunes of stage 03 will log to.
# - Prove that an artifact logged through the server lands in the bucket.
#
# ### Costs
#
# The `local` profile runs on this machine and costs nothing. On `gke` the server runs on the cluster's CPU pool and its database on a
# small persistent disk: a few cents per hour on top of stage 01.

# %% [markdown]
# ## Before you begin
#
# This stage continues a run: the latest one under `runs/`, or the one `run_dir` names. Run
# `01-cluster` (and the stages before it) first, by hand or with `tunekit run`.
#
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
# - `run_dir`: the run to use; empty: the latest run under runs/
# - `profile`: `local` or `gke`; empty: `$TUNEKIT_PROFILE`, else `local`
# - `settings`: any other setting, e.g. `{"experiment_name": "demo"}`
#
# Secrets such as `HF_TOKEN` are never parameters: they come from the environment.

# %% tags=["parameters"]
run_dir = ""  # @param {type:"string"}
profile = ""  # @param ["", "local", "gke"]
settings = {}  # @param {type:"raw"}

# %% [markdown]
# ### Open the run

# %%
import tunekit

run = tunekit.open_run(run_dir, profile=profile, **settings)
run

# %% [markdown]
# ## Start the tracking server
#
# This waits for the server's health check, with a timeout (`service_timeout_s`) and an error that
# points at the server's log. Re-running the cell reuses a healthy server.

# %%
tracking = tunekit.start_mlflow(run)
tracking

# %% [markdown]
# ## Check that artifacts reach the bucket
#
# A small file goes through the tracking server into the bucket and is found there again with the
# `google-cloud-storage` client. The check is logged to its own experiment,
# `tunekit-platform-checks`, so it never competes with the fine-tunes.

# %%
tunekit.verify_artifact_store(run)

# %% [markdown]
# ## Open the MLflow UI
#
# The experiment is empty until stage 03 logs the first fine-tune. The UI asks for the admin's
# login: `make ui` (or `tunekit ui`) in a terminal prints it.

# %%
print(f"MLflow UI: {tracking['ui_url']}")

# %% [markdown]
# ## Cleaning up
#
# Leave the server up for the next stages; `07-cleanup` (or `make down`) stops it. Its data stays
# in the run directory and the bucket: `make ui` reopens the UI on it later.

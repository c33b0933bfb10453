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
# # 07 · Cleaning up
#
# [![Open in Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/tunekit-dev/tunekit/blob/main/notebooks/07-cleanup.ipynb) [![Open in Vertex AI Workbench](https://img.shields.io/badge/Open%20in-Vertex%20AI%20Workbench-4285F4?logo=googlecloud)](https://console.cloud.google.com/vertex-ai/workbench/deploy-notebook?download_url=https://raw.githubusercontent.com/tunekit-dev/tunekit/main/notebooks/07-cleanup.ipynb) [![View on GitHub](https://img.shields.io/badge/View%20on-GitHub-181717?logo=github)](https://github.com/tunekit-dev/tunekit/blob/main/notebooks/07-cleanup.ipynb)
#
# Stage 7 of 7 of **tunekit**. The earlier stages left services (and, on GKE, cloud resources)
# running; this one ends them.
#
# ## Overview
#
# | profile | what this stage does |
# |---|---|
# | `local` (default) | stops every process the run's state records (MLflow server, GCS emulator, serving processes); the run directory stays, so `make ui` can reopen the MLflow UI on its data |
# | `gke` | deletes the workloads, uninstalls the Helm release and runs `terraform destroy` |
#
# Running it twice is fine: what is already stopped is skipped.
#
# ### Objective
#
# - Stop everything this run started, and check that nothing is left running.
#
# ### Costs
#
# This stage ends the charges of the earlier ones. On `gke`, check the console afterwards for
# resources created outside tunekit.

# %% [markdown]
# ## Before you begin
#
# This stage stops what the earlier stages of a run started; it is safe to run twice, and on a run
# that never got past `01-cluster`.
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
# Colab edit them as a form. Empty means: the run's setting, else the environment's, else the
# profile's (`tunekit settings` lists every setting and its source).
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
# ## Stop everything

# %%
tunekit.cleanup(run)

# %% [markdown]
# ## Check that nothing is left running

# %%
left = tunekit.running_services(run)
assert not left, f"still running: {sorted(left)}"
print(f"Nothing of run {run.id} is running; its data stays in {run.dir}")

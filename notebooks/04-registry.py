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
# # 04 · Register the best run
#
# [![Open in Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/tunekit-dev/tunekit/blob/main/notebooks/04-registry.ipynb) [![Open in Vertex AI Workbench](https://img.shields.io/badge/Open%20in-Vertex%20AI%20Workbench-4285F4?logo=googlecloud)](https://console.cloud.google.com/vertex-ai/workbench/deploy-notebook?download_url=https://raw.githubusercontent.com/tunekit-dev/tunekit/main/notebooks/04-registry.ipynb) [![View on GitHub](https://img.shields.io/badge/View%20on-GitHub-181717?logo=github)](https://github.com/tunekit-dev/tunekit/blob/main/notebooks/04-registry.ipynb)
#
# Stage 4 of 7 of **tunekit**. Stage 03 left one or more fine-tunes in the MLflow experiment, each
# with its LoRA adapter logged as a model and an evaluation of it on held-out rows.
#
# ## Overview
#
# Data scientists run many fine-tunes; this stage makes sure the best one is never lost. It
# compares every finished fine-tune of the experiment by measured quality, registers the best one's
# model in the MLflow Model Registry and points the alias `champion` at that version. Stages 05 and
# 06 serve `models:/<name>@champion`, so they serve exactly what this stage chose.
#
# | profile | what this stage does |
# |---|---|
# | `local` (default) | the Model Registry of the local MLflow server |
# | `gke` | the same, on the tracking server in the cluster |
#
# ### Objective
#
# - Compare the experiment's fine-tunes: a table and a picture.
# - Choose the best by execution accuracy of the tuned model (ties: the lower eval loss), or the run
#   you pin, and register it with the alias `champion`. Registering the same run again reuses its
#   version.
#
# ### Costs
#
# The `local` profile runs on this machine and costs nothing. On `gke` this stage only talks to the tracking server; it adds no
# resources.

# %% [markdown]
# ## Before you begin
#
# This stage continues a run: the latest one under `runs/`, or the one `run_dir` names. Run
# `03-finetune` (and the stages before it) first, by hand or with `tunekit run`.
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
# - `pin_run_id`: an MLflow run id to register instead of the best run; empty: the best
# - `settings`: any other setting, e.g. `{"experiment_name": "demo"}`
#
# Secrets such as `HF_TOKEN` are never parameters: they come from the environment.

# %% tags=["parameters"]
run_dir = ""  # @param {type:"string"}
profile = ""  # @param ["", "local", "gke"]
pin_run_id = ""  # @param {type:"string"}
settings = {}  # @param {type:"raw"}

# %% [markdown]
# ### Open the run

# %%
import tunekit

run = tunekit.open_run(run_dir, profile=profile, pin_run_id=pin_run_id, **settings)
run

# %% [markdown]
# ## Compare the fine-tunes
#
# Best first, by `score`: the mean of the tuned model's execution accuracy on the held-out rows
# (`tuned_execution_accuracy`) and on the validation set (`validation_tuned_execution_accuracy`:
# tables the training data never had, questions written the way people ask); ties go to the
# lower `eval_loss`. Execution accuracy runs the model's SQL and the gold SQL on SQLite tables and
# compares their results. A run that memorised its training rows scores well on the first and
# fails the second. The test set is not in this table: it chooses nothing, so its number stays
# honest (each run reports it in stage 03 and in MLflow).

# %%
tunekit.compare_runs(run)

# %% [markdown]
# The same runs as a picture: both execution accuracies on the left, eval loss on the right.
# In JupyterLab, pick the runs to compare in the list (Ctrl/Shift-click); headless, every run is
# drawn.

# %%
tunekit.plots.choose_runs(run)

# %% [markdown]
# ## Register the champion
#
# The chosen run's adapter model becomes a version of the registered model, tagged with its
# evaluation, and the alias `champion` moves to it.

# %%
registered = tunekit.register_model(run)
print(f"{registered['model_uri']} is version {registered['version']}: score "
      f"{registered['score']:.1%} (held-out {registered['tuned_execution_accuracy']:.1%}, "
      f"validation {registered['validation_tuned_execution_accuracy']:.1%})")
print(f"Registered from run {registered['run_id']}")
print(f"Model page: {registered['ui_url']}")

# %% [markdown]
# ## Cleaning up
#
# Registering starts nothing. The registered model stays in MLflow; `07-cleanup` stops the
# servers.

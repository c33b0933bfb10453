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
# # 06 · Serve the champion with MLServer (KServe V2)
#
# [![Open in Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/tunekit-dev/tunekit/blob/main/notebooks/06-deploy-kserve.ipynb) [![Open in Vertex AI Workbench](https://img.shields.io/badge/Open%20in-Vertex%20AI%20Workbench-4285F4?logo=googlecloud)](https://console.cloud.google.com/vertex-ai/workbench/deploy-notebook?download_url=https://raw.githubusercontent.com/tunekit-dev/tunekit/main/notebooks/06-deploy-kserve.ipynb) [![View on GitHub](https://img.shields.io/badge/View%20on-GitHub-181717?logo=github)](https://github.com/tunekit-dev/tunekit/blob/main/notebooks/06-deploy-kserve.ipynb)
#
# Stage 6 of 7 of **tunekit**. Stage 04 registered the champion; stage 05 serves it with FastAPI.
#
# ## Overview
#
# KServe serves MLflow models with **MLServer** and its MLflow runtime, speaking the Open Inference
# (V2) protocol. This stage serves the same registered version that way: MLServer loads
# `models:/<name>/<version>` of the champion with `mlserver-mlflow`, and answers
# `POST /v2/models/<name>/infer`. The logged model generates with the kit's own code, held to each
# question's SQL grammar as in stage 03 and 05, so it returns the same text as stage 05. A request
# carries prompts (as the tutorial's `input.json`), or questions and contexts row by row (inputs
# `question` and `context`).
#
# | profile | what this stage does |
# |---|---|
# | `local` (default) | writes a model-settings file into the run directory and starts `mlserver start` on it as a managed local service (MLServer has its own environment, `.venv-mlserver`) |
# | `gke` | applies a KServe `InferenceService` (V2 protocol) whose `storageUri` is the registered version, on an MLServer image with the model's dependencies baked in, behind an internal Gateway (one address in the VPC; during a rollout it weighs champion and challenger by `challenger_share`) |
#
# ### Objective
#
# - Start MLServer on the champion and wait until the model is ready.
# - Send a V2 inference request like the tutorial's `input.json`, and compare with stage 05.
#
# ### Costs
#
# The `local` profile runs on this machine and costs nothing. On `gke` the InferenceService holds a GPU node while it runs (a second one for the challenger during a rollout), and its Gateway is an internal Application Load Balancer, billed by the hour and by the data it processes; `07-cleanup`
# removes both.

# %% [markdown]
# ## Before you begin
#
# This stage continues a run: the latest one under `runs/`, or the one `run_dir` names. Run
# `04-registry` (and the stages before it) first, by hand or with `tunekit run`.
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
# - `question`, `context`: what to ask, and the `CREATE TABLE` statements it is about (by default
#   the GKE tutorial's own question)
# - `expected`: the SQL that answers it, if you know it: the answer is then checked by running
#   both on SQLite tables made from `context` (empty: the tutorial's answer to its question,
#   nothing to check for another question)
# - `settings`: any other setting, e.g. `{"experiment_name": "demo"}`
#
# Secrets such as `HF_TOKEN` are never parameters: they come from the environment.

# %% tags=["parameters"]
run_dir = ""  # @param {type:"string"}
profile = ""  # @param ["", "local", "gke"]
question = 'What is the total number of attendees with age over 30 at kubecon "eu"?'  # @param {type:"string"}
context = "CREATE TABLE attendees (name VARCHAR, age INTEGER, kubecon VARCHAR)"  # @param {type:"string"}
expected = ""  # @param {type:"string"}
settings = {}  # @param {type:"raw"}

# %% [markdown]
# ### Open the run

# %%
import tunekit

run = tunekit.open_run(run_dir, profile=profile, **settings)
run

# %% [markdown]
# ## Start MLServer
#
# Returns once `/v2/models/<name>/ready` answers. A server already running on the same champion
# is reused.

# %%
server = tunekit.deploy_kserve(run)["mlserver"]
print(f"Serving {server['model_uri']} (version {server['model_version']})")
print(f"V2 endpoint: {server['infer_url']}")

# %% [markdown]
# ## Roll out a challenger
#
# Stage 04 registers a new best as `challenger` rather than moving `champion` (the setting
# `promotion=immediate` moves it at once; with no champion yet it is promoted at once), and
# stage 05 serves it beside the champion (one base model, two adapters; a share of the
# requests, `challenger_share`, goes to the challenger). `tunekit.rollout` asks the validation
# set of each through the live server, reads the live numbers until its rule decides, then
# promotes the challenger (the old champion keeps the alias `previous`) or rolls it back, and
# deploys the servers again on the champion alone. The same is `tunekit rollout` in a
# terminal. On `gke`, until then, MLServer serves the challenger as KServe's canary and vLLM
# serves both adapters (the request's `model` names one).

# %%
if tunekit.server_requests.challenger_version(run):
    decided = tunekit.rollout(run)
    display(tunekit.plots.rollout(decided))
else:
    print("No challenger registered: nothing to roll out (stage 04 registers one when a new "
          "best fine-tune is not the champion).")

# %% [markdown]
# ## Ask a question over the V2 protocol
#
# The GKE tutorial's own question, in its own prompt format (the kit trains on that format, so the
# tutorial's `GET /predict?message=...` and its V2 `input.json` work as they are).

# %%
answer = tunekit.ask(run, question, context, server="mlserver", expected=expected)
print(f"Q:   {answer['question']}")
print(f"SQL: {answer['sql']}   (model version {answer['model_version']})")
if answer["correct"] is not None:
    print("correct: it returns what the expected SQL returns" if answer["correct"] else
          f"wrong: the expected SQL is {answer['expected']}")

# %% [markdown]
# The same request from a terminal:

# %%
print(answer["curl"])

# %% [markdown]
# ## Compare with stage 05
#
# The FastAPI server of stage 05 and MLServer serve the same champion version, greedily: asked
# the same question, both give the same SQL (a server that was stopped says so).

# %%
tunekit.compare_servers(run, question, context)

# %% [markdown]
# On `gke` the champion's adapter is also served by KServe's Hugging Face runtime (vLLM) on the
# base model. It gets the same grammar in the request field its vLLM version reads
# (`structured_outputs`; `guided_grammar` before vLLM 0.11); the request, sent from inside
# the cluster:

# %%
vllm = tunekit.server_requests.vllm_request(run, question, context)
print(vllm["curl"] if vllm else "(no vLLM InferenceService on this profile)")

# %% [markdown]
# ## Cleaning up
#
# MLServer keeps running for you to try; `07-cleanup` (or `make down`) stops it and the FastAPI
# server.

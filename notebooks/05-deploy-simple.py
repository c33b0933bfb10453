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
# # 05 · Serve the champion with FastAPI
#
# [![Open in Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/tunekit-dev/tunekit/blob/main/notebooks/05-deploy-simple.ipynb) [![Open in Vertex AI Workbench](https://img.shields.io/badge/Open%20in-Vertex%20AI%20Workbench-4285F4?logo=googlecloud)](https://console.cloud.google.com/vertex-ai/workbench/deploy-notebook?download_url=https://raw.githubusercontent.com/tunekit-dev/tunekit/main/notebooks/05-deploy-simple.ipynb) [![View on GitHub](https://img.shields.io/badge/View%20on-GitHub-181717?logo=github)](https://github.com/tunekit-dev/tunekit/blob/main/notebooks/05-deploy-simple.ipynb)
#
# Stage 5 of 7 of **tunekit**. Stage 04 registered the best fine-tune as a version of the
# registered model and pointed the alias `champion` at it.
#
# ## Overview
#
# This stage serves exactly that version behind a small HTTP API, `tunekit.serve` (FastAPI under
# uvicorn). It loads `models:/<name>@champion` once at start-up: the LoRA adapter from MLflow and
# its base model. Requests that arrive together share one `generate` call, so the server answers
# more requests per second the more clients it has. It answers as stage 03 evaluated the model:
# each answer is held to a grammar made from the request's own `CREATE TABLE` statements and
# question (`tunekit.grammar`), so it is always SQL over those tables; a context that is not
# `CREATE TABLE` statements is answered 422, naming the problem.
#
# | profile | what this stage does |
# |---|---|
# | `local` (default) | starts `python -m tunekit.serve` as a managed local service (logged, reused, stopped by 07) |
# | `gke` | rolls out the same command as a Deployment and Service, probes on `/healthz` and `/readyz` |
#
# The API: `POST /predict` with `{"question": ..., "context": ...}` (or `{"prompt": ...}`), and the
# tutorial's `GET /predict?message=...`; `GET /healthz`, `GET /readyz`; OpenAPI docs at `/docs`.
# Each answer says whether it was `constrained` (a prompt that is not in the kit's template is
# answered freely).
#
# ### Objective
#
# - Start the server on the champion and wait until the model is loaded.
# - Ask it a question about a table, and show the `curl` command that does the same.
#
# ### Costs
#
# The `local` profile runs on this machine and costs nothing. On `gke` the Deployment holds a GPU node while it runs (see 03 for
# prices); `07-cleanup` removes it.

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
# ## Start the server
#
# Returns once `/readyz` answers: the model is loaded. A server already running on the same
# champion is reused.

# %%
server = tunekit.deploy_simple(run)["fastapi"]
print(f"Serving {server['model_uri']} (version {server['model_version']}) at {server['url']}")
print(f"API docs: {server['docs']}")

# %% [markdown]
# ## Ask a question
#
# The GKE tutorial's own question, in its own prompt format (the kit trains on that format, so the
# tutorial's `GET /predict?message=...` and its V2 `input.json` work as they are).

# %%
answer = tunekit.ask(run, question, context, expected=expected)
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
# ## Cleaning up
#
# The server keeps running for you to try; `07-cleanup` (or `make down`) stops it.

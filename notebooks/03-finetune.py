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
# # 03 · Fine-tune with LoRA
#
# [![Open in Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/tunekit-dev/tunekit/blob/main/notebooks/03-finetune.ipynb) [![Open in Vertex AI Workbench](https://img.shields.io/badge/Open%20in-Vertex%20AI%20Workbench-4285F4?logo=googlecloud)](https://console.cloud.google.com/vertex-ai/workbench/deploy-notebook?download_url=https://raw.githubusercontent.com/tunekit-dev/tunekit/main/notebooks/03-finetune.ipynb) [![View on GitHub](https://img.shields.io/badge/View%20on-GitHub-181717?logo=github)](https://github.com/tunekit-dev/tunekit/blob/main/notebooks/03-finetune.ipynb)
#
# Stage 3 of 7 of **tunekit**. Stage 02 left an MLflow tracking server, with its artifacts in the
# bucket, and an empty experiment.
#
# ## Overview
#
# This stage fine-tunes the base model with LoRA to answer questions about tables in SQL, with
# TRL's `SFTTrainer` and PEFT, and tracks the fine-tune as one MLflow run: every hyperparameter,
# the loss curve, the train and eval datasets, system metrics, the adapter as an MLflow model, and
# an evaluation of the base and the tuned model on three sets of questions. Runs are compared in
# stage 04 by the part of that evaluation meant for choosing, so the best one is never lost and
# "best" means something.
#
# | profile | what this stage does |
# |---|---|
# | `local` (default) | runs `python -m tunekit.train` as a subprocess: `tiny-gemma2` (a small Gemma-2 shipped with the kit, pretrained to copy text and to read questions, tables and SQL) on synthetic rows, about two and a half minutes on two cores |
# | `gke` | runs the same module as a Kubernetes Job on a GPU node: `google/gemma-2-9b` on `b-mc2/sql-create-context` |
#
# Re-running the stage with the same settings reuses the finished fine-tune; if it stopped half-way
# it resumes from its last checkpoint, in the same MLflow run. Changed settings start a new run.
#
# ### Objective
#
# - Train a LoRA adapter and log it, with everything needed to reproduce it, to MLflow.
# - Measure exact match and execution accuracy of the base and the tuned model on held-out rows,
#   on the validation set (what chooses) and on a test set written by hand the way people ask
#   (what reports), answering as the servers do: SQL over the question's own tables.
#
# ### Dataset
#
# [`b-mc2/sql-create-context`](https://huggingface.co/datasets/b-mc2/sql-create-context) (CC BY 4.0):
# 78,577 rows of a question, the `CREATE TABLE` statements it is about, and the SQL that answers
# it. Locally, `synthetic` generates rows in the same format with a seeded generator, every answer
# valid SQLite, every row with tables, columns and values of its own (drawn from thousands of
# names, many made up), so the model must copy them from the question and the tables. A local
# `.json`, `.jsonl` or `.parquet` file of such rows works too. The generator asks the way people do:
# about everyday tables (castles, wines, podcasts, ...) with many phrasings per SQL shape, columns
# named or only implied ("Who is the oldest journalist?", "wines from Chile"), and in the public
# data's WikiSQL conventions (`table_name_N`, lower-cased literals, `COUNT(col)`).
#
# ### Three kinds of evaluation data, never mixed
#
# | set | what it is | what it is for |
# |---|---|---|
# | held-out rows | `eval_size` rows of the dataset, kept out of training | in distribution: did it learn its data? |
# | validation | 104 questions about tables the generator never makes (the tutorial's first) and 110 written by hand, the way people ask (`tunekit.eval_sets`) | **chooses**: stage 04's ranking, sweeps, recipe searches |
# | test | 180 questions written by hand by someone who never read the generator: everyday tables and WikiSQL's conventions; none is a sentence the generator makes | **reports** only: nothing that chooses reads it |
#
# A set that chose a model cannot also say how good it is: choosing on it makes its number
# optimistic. So the run's `score` (stage 04 ranks by it) is the mean of the tuned model's
# execution accuracy on held-out rows and on the validation set, and the test set's number is the
# one to quote.
#
# ### Costs
#
# The `local` profile runs on this machine and costs nothing. On `gke` it bills GPU node time: for example an NVIDIA L4 node
# (`g2-standard-8`) at roughly $0.85 per hour on demand, or an A100 40GB (`a2-highgpu-1g`) at
# roughly $3.70; a 500-step LoRA fine-tune of gemma-2-9b takes in the order of tens of minutes.

# %% [markdown]
# ## Before you begin
#
# This stage continues a run: the latest one under `runs/`, or the one `run_dir` names. Run
# `02-mlflow` (and the stages before it) first, by hand or with `tunekit run`.
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
# - `model_id`: "tiny-gemma2", a Hub id like "google/gemma-2-9b" or a local directory
# - `dataset`: "synthetic", a Hub id, or a .json/.jsonl/.parquet file
# - `max_steps`: optimizer steps (local profile: 1000)
# - `learning_rate`: peak learning rate (local profile: 2e-3)
# - `lora_r`: LoRA rank (16)
# - `settings`: any other setting, e.g. `{"experiment_name": "demo"}`
# - `sweep`: a search after the fine-tune, e.g. "lora_r=8,16 learning_rate=1e-3,2e-3" (each a
#   setting and its values); empty: none (`tunekit sweep` runs one from the command line)
#
# Secrets such as `HF_TOKEN` are never parameters: they come from the environment.

# %% tags=["parameters"]
run_dir = ""  # @param {type:"string"}
profile = ""  # @param ["", "local", "gke"]
model_id = ""  # @param {type:"string"}
dataset = ""  # @param {type:"string"}
max_steps = None  # @param {type:"raw"}
learning_rate = None  # @param {type:"raw"}
lora_r = None  # @param {type:"raw"}
settings = {}  # @param {type:"raw"}
sweep = ""  # @param {type:"string"}

# %% [markdown]
# ### Open the run
#
# The knobs above join the run's settings; `tunekit settings` lists all of them.

# %%
import tunekit

knobs = dict(model_id=model_id, dataset=dataset, max_steps=max_steps,
             learning_rate=learning_rate, lora_r=lora_r)
run = tunekit.open_run(run_dir, profile=profile, **knobs, **settings)
run

# %% [markdown]
# ## Look at the data
#
# Each row becomes a prompt and a completion. The prompt is the GKE tutorial's own format (its
# `finetune.py` and `input.json`): the question, the `CREATE TABLE` context, then `Answer:`; the
# completion is the SQL, then the tokenizer's end-of-sequence token. The same template serves
# training, evaluation and both servers (`tunekit.prompts`), so the tutorial's requests work as
# they are.

# %%
from tunekit.prompts import TEMPLATE

print(TEMPLATE.format(context="{context}", question="{question}") + "{answer}<eos>")
tunekit.preview_examples(run, 3)

# %% [markdown]
# ## The recipe
#
# The fine-tune is TRL's `SFTTrainer` with a PEFT LoRA adapter on the base model. These are the
# two configs `python -m tunekit.train` builds from the run's settings (the `lora` and `training`
# groups of `tunekit settings`), with the values this run will use: the loss is on the SQL only
# (`completion_only_loss`), checkpoints go to the job's folder so a stopped fine-tune resumes, and
# the trainer reports to MLflow.

# %%
from IPython.display import Code, display

from tunekit.recipe import recipe

Code(recipe(run.settings), language="python")

# %% [markdown]
# ## Fine-tune
#
# Progress lines stream below while the trainer runs. Everything it prints goes to the log file
# named in the first line.

# %%
result = tunekit.finetune(run)
{k: result[k] for k in ("mlflow_run_id", "steps", "eval_loss", "model_uri")}

# %% [markdown]
# ## Look at the training curves
#
# Read back from MLflow: the loss on the SQL tokens and the learning-rate schedule.

# %%
tunekit.plots.training_curves(run)

# %% [markdown]
# ## Compare the base and the tuned model
#
# Both answered the held-out rows, the validation set and the test set. They answer as the
# servers do, through a grammar made for each question (`tunekit.grammar`): SQL over the
# question's own tables and columns, its values taken from the question, so every answer is a
# query that runs. The tuned model also answered freely (`tuned, free`), so the grammar's effect
# is a number in every run. Execution accuracy runs the predicted and the gold SQL on SQLite
# tables filled to tell them apart (a dropped condition, `=` for `!=`, another value, COUNT(*)
# for COUNT(col) all score wrong). The run's `score`, by which stage 04 ranks runs, reads
# held-out and validation only.

# %%
display(tunekit.plots.base_vs_tuned(run))
tunekit.plots.evaluation_summary(result)

# %% [markdown]
# ## Optional: sweep the recipe
#
# With `sweep` set, every combination of its values is a fine-tune of its own, tracked as a child
# run of one MLflow parent run that gets the best trial's metrics (Optuna picks the trials here,
# Katib on GKE). Stage 04 then registers the best run of the experiment, whichever it is. Each
# dot below is a trial; failed ones are red crosses.

# %%
if sweep:
    swept = tunekit.sweep(run, tunekit.Sweep(run.settings, tunekit.parse_grid(sweep.split())))
    display(tunekit.plots.sweep_trials(run))
    print(f"best trial: {swept['best_run_id']} ({swept['finished']} finished, "
          f"{swept['failed']} failed)")

# %% [markdown]
# ## Open the run in MLflow
#
# Params, metrics, the two datasets, system metrics, the evaluation table and the logged adapter
# model are all on the run's page.

# %%
print(f"MLflow run: {tunekit.plots.run_link(run)}")

# %% [markdown]
# ## Cleaning up
#
# The fine-tune leaves nothing running. Its checkpoints stay under the run directory; the adapter
# and everything else is in MLflow. `07-cleanup` stops the platform.

"""Settings: layers, validation messages, secrets."""

from __future__ import annotations

import pytest

from tunekit.settings import GROUPS, Settings, SettingsError, load_settings


@pytest.mark.parametrize(
    ("values", "env", "expected"),
    [
        pytest.param(
            {},
            {},
            {
                "profile": "local",
                "model_id": "tiny-gemma2",
                "dataset": "synthetic",
                "bucket": "tunekit",
            },
            id="defaults",
        ),
        pytest.param(
            {"profile": "gke", "project_id": "acme"},
            {},
            {
                "model_id": "google/gemma-2-9b",
                "dataset": "b-mc2/sql-create-context",
                "bucket": "acme-tunekit",
                "load_in_4bit": True,
                "dry_run": False,
            },
            id="gke-profile-file",
        ),
        pytest.param(
            {"profile": "gke"},
            {"GOOGLE_CLOUD_PROJECT": "from-env"},
            {"project_id": "from-env", "bucket": "from-env-tunekit"},
            id="gcp-env",
        ),
        pytest.param(
            {},
            {"TUNEKIT_PROFILE": "gke", "TUNEKIT_PROJECT_ID": "p1"},
            {"profile": "gke", "model_id": "google/gemma-2-9b"},
            id="profile-from-env",
        ),
        pytest.param(
            {},
            {"TUNEKIT_MODEL_ID": "org/model"},
            {"model_id": "org/model"},
            id="env-beats-profile-file",
        ),
        pytest.param(
            {"model_id": "org/param"},
            {"TUNEKIT_MODEL_ID": "org/env"},
            {"model_id": "org/param"},
            id="parameter-beats-env",
        ),
        pytest.param(
            {"service_timeout_s": "7.5"}, {}, {"service_timeout_s": 7.5}, id="string-coerced"
        ),
        pytest.param(
            {"bucket": "", "experiment_name": None},
            {},
            {"bucket": "tunekit", "experiment_name": "gemma2-text-to-sql"},
            id="empty-means-unset",
        ),
        pytest.param({"dataset": "rows.jsonl"}, {}, {"dataset": "rows.jsonl"}, id="data-file"),
    ],
)
def test_layers(values, env, expected, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "rows.jsonl").write_text("")  # a data file is checked to exist
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    settings = load_settings(**values)
    assert {k: getattr(settings, k) for k in expected} == expected


@pytest.mark.parametrize(
    ("values", "names", "says"),
    [
        pytest.param({"profile": "nope"}, ["profile"], "allowed: 'local' or 'gke'", id="profile"),
        pytest.param({"profile": "gke"}, ["project_id"], "GOOGLE_CLOUD_PROJECT", id="gke-project"),
        pytest.param({"bucket": "Bad_Bucket"}, ["bucket"], "GCS bucket name", id="bucket"),
        pytest.param({"region": "mars"}, ["region"], "us-central1", id="region"),
        pytest.param(
            {"cluster_name": "1abc"}, ["cluster_name"], "starting with a letter", id="cluster"
        ),
        pytest.param({"model_id": "no slash"}, ["model_id"], "tiny-gemma2", id="model"),
        pytest.param({"dataset": "data.csv"}, ["dataset"], ".jsonl", id="dataset"),
        pytest.param(
            {"service_timeout_s": "-1"}, ["service_timeout_s"], "greater than 0", id="timeout"
        ),
        pytest.param({"experiment_name": "  "}, ["experiment_name"], "non-empty", id="experiment"),
        pytest.param({"learning_rat": "1"}, ["learning_rat"], "unknown setting", id="unknown"),
        pytest.param({"bucket": "x", "region": "y"}, ["bucket", "region"], "", id="all-reported"),
    ],
)
def test_invalid_values_name_the_setting(values, names, says):
    with pytest.raises(SettingsError) as e:
        load_settings(**values)
    message = str(e.value)
    for name in names:
        assert f"  {name}: " in message
    assert says in message


def test_the_fine_tune_job_is_named_by_the_training_settings_only():
    base = load_settings(profile="local").finetune_job
    for unchanged in ({"pin_run_id": "abc"}, {"registered_model_name": "other"},
                      {"service_timeout_s": 30}, {"mlflow_backend": "postgresql"}):  # fmt: skip
        assert load_settings(profile="local", **unchanged).finetune_job == base, unchanged
    for changed in ({"lora_r": 8}, {"learning_rate": 1e-3}, {"seed": 1}, {"eval_size": 50},
                    {"experiment_name": "other"}, {"load_in_4bit": True}):  # fmt: skip
        assert load_settings(profile="local", **changed).finetune_job != base, changed


def test_the_job_names_of_the_default_settings_are_pinned():
    """A job's name is how a fine-tune is found again: its result reused, its checkpoints
    resumed (a gke Job of that name, a local job folder). A change here renames every job:
    earlier runs' fine-tunes are not found and are trained again. Change the names only with
    a note in the release (tunekit.settings_groups.JOB_IDENTITY, JOB_NEUTRAL)."""
    assert load_settings(profile="local").finetune_job == "ft-a8854e21be"
    assert load_settings(profile="gke", project_id="p").finetune_job == "ft-57d079b170"


def test_every_setting_says_whether_it_is_part_of_a_jobs_identity():
    """A new setting that shapes the result but is left out would make two different
    fine-tunes one (the second reuses the first's result); one put in without a neutral value
    renames every job. JOB_IDENTITY lists each field; the digest is flat, so a field that moves
    between groups keeps every name."""
    from tunekit.settings_groups import JOB_IDENTITY, JOB_NEUTRAL, identity_fields

    assert set(JOB_IDENTITY) == set(Settings.model_fields)
    assert set(JOB_NEUTRAL) <= set(identity_fields())
    for name in ("gpu_zones", "image_tag", "registered_model_name", "dry_run"):
        assert not JOB_IDENTITY[name], name
    for name in ("constrained_decoding", "eval_set_rows", "lora_r", "seed", "max_steps"):
        assert JOB_IDENTITY[name], name


def test_settings_groups_are_what_peft_and_trl_take():
    from peft import LoraConfig
    from trl import SFTConfig

    settings = load_settings(profile="local")
    groups = [settings.group(g) for g in GROUPS]
    names = [n for g in groups for n in type(g).names()]
    assert sorted(names) == sorted(Settings.model_fields)  # every setting in one group
    assert set(settings.lora.as_config()) <= set(LoraConfig.__dataclass_fields__)
    # one consumer each: every field of the training group is an SFTConfig argument
    assert set(settings.training.as_config()) <= set(SFTConfig.__dataclass_fields__)
    assert len(settings.training.as_config()) == len(type(settings.training).names())


@pytest.mark.parametrize("name", ["hf_token", "HF_TOKEN", "mlflow_password", "api_secret"])
def test_secrets_are_never_parameters(name):
    with pytest.raises(SettingsError, match=r"secret.*environment"):
        load_settings(**{name: "hf_abc123"})


def test_a_setting_named_like_a_secret_is_still_a_setting():
    assert load_settings(eval_max_new_tokens="12").eval_max_new_tokens == 12

"""The pieces of `tunekit.train` that need no training: configs, params, checkpoints."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tunekit.mlflow_record import run_params, run_tags
from tunekit.settings import load_settings
from tunekit.train_parts import last_complete_checkpoint, lora_config, sft_config


def test_last_complete_checkpoint_skips_one_killed_while_saving(tmp_path: Path) -> None:
    for step, complete in ((20, True), (100, True), (120, False)):
        folder = tmp_path / f"checkpoint-{step}"
        folder.mkdir()
        if complete:
            (folder / "trainer_state.json").write_text(json.dumps({"global_step": step}))
    (tmp_path / "checkpoint-140").mkdir()
    (tmp_path / "checkpoint-140" / "trainer_state.json").write_text('{"global_st')  # torn write
    assert last_complete_checkpoint(tmp_path) == str(tmp_path / "checkpoint-100")
    assert last_complete_checkpoint(tmp_path / "missing") is None


def test_configs_follow_the_settings(tmp_path: Path) -> None:
    settings = load_settings(
        profile="local", lora_r=8, lora_alpha=24, lora_target_modules=["q_proj", "v_proj"],
        max_steps=77, save_steps=11, learning_rate=0.003,
    )  # fmt: skip
    lora = lora_config(settings)
    assert (lora.r, lora.lora_alpha, set(lora.target_modules)) == (8, 24, {"q_proj", "v_proj"})
    assert lora.modules_to_save is None  # the local recipe trains LoRA only
    full = lora_config(load_settings(lora_modules_to_save="lm_head"))
    assert full.modules_to_save == ["lm_head"]
    args = sft_config(settings, tmp_path)
    assert (args.max_steps, args.save_steps, args.learning_rate) == (77, 11, 0.003)
    assert args.completion_only_loss is True
    assert args.report_to == ["mlflow"]
    assert args.output_dir == str(tmp_path / "checkpoints")
    assert lora_config(load_settings(profile="gke", project_id="p")).target_modules == "all-linear"


def test_params_are_every_setting_flattened_and_never_a_secret(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HF_TOKEN", "hf_secret_value_0123")
    settings = load_settings(profile="local")
    params = run_params(settings)
    settings_params = {f"tunekit.{name}" for name in type(settings).model_fields}
    assert set(params) == settings_params | {"world_size", "effective_batch_size"}
    assert params["tunekit.lora_target_modules"] == "all-linear"
    assert (params["world_size"], params["effective_batch_size"]) == (1, 8)
    assert "hf_secret_value_0123" not in json.dumps(params) + json.dumps(run_tags(settings))

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


def test_the_shipped_base_records_how_it_was_pretrained() -> None:
    """`pretraining.json` beside tiny-gemma2's weights is the recipe that made them: its
    size matches the shipped config, and every phase the tool ran is recorded (a continued
    SQL-file phase with its own steps and seeds, none of them the fine-tune's seed)."""
    from tunekit.models import TINY_DIR

    recipe = json.loads((TINY_DIR / "pretraining.json").read_text())
    config = json.loads((TINY_DIR / "config.json").read_text())
    for key in ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size"):
        assert recipe[key] == config[key], key
    assert recipe["steps"] and recipe["decay_steps"] and recipe["task_steps"]
    more = recipe.get("more_task_steps", [])
    assert len(more) == len(recipe.get("more_task_seeds", []))
    seeds = [recipe["data_seed"], recipe["task_seed"], *recipe.get("more_task_seeds", [])]
    assert len(set(seeds)) == len(seeds) and 42 not in seeds


def test_more_pretraining_refuses_a_base_the_tool_did_not_finish(tmp_path: Path) -> None:
    """`--more` continues a complete base only: one without a recorded SQL-file phase is a
    clear error naming it, and nothing is written."""
    import subprocess
    import sys

    base = tmp_path / "base"
    base.mkdir()
    (base / "pretraining.json").write_text(json.dumps({"steps": 10, "minutes": 1.0}))
    tool = Path(__file__).parents[1] / "tools" / "pretrain_tiny_gemma2.py"
    out = tmp_path / "out"
    done = subprocess.run(
        [sys.executable, str(tool), "--more", str(base), "--output", str(out)],
        capture_output=True,
        text=True,
    )
    assert done.returncode != 0
    assert "not a complete base" in done.stderr and str(base) in done.stderr
    assert not out.exists()

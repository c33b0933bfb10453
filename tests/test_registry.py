"""Stage 04 against a real MLflow server: the best run is registered, aliased, and only once.

The fine-tunes here are MLflow runs with the metrics stage 03 logs and a small real pyfunc model,
so the registry's choice can be set up exactly (a real fine-tune is tested in test_finetune).
"""

from __future__ import annotations

import dataclasses
import json

import mlflow
import pytest
from mlflow import MlflowClient

import tunekit
from tunekit.promotion import DECISION_TAG, PREVIOUS, Live, conclude, decide
from tunekit.registry import CHALLENGER, CHAMPION, alias_version, compare_runs, register_best
from tunekit.run import Run
from tunekit.server_requests import champion_version
from tunekit.stages import use_login


class Echo(mlflow.pyfunc.PythonModel):
    def predict(self, context, model_input: list[str], params=None) -> list[str]:
        return model_input


def finetune(
    client: MlflowClient, experiment_id: str, accuracy: float, eval_loss: float,
    status: str = "FINISHED", with_model: bool = True,
) -> str:  # fmt: skip
    """A run shaped like stage 03's: its evaluation metrics (the same accuracy on the held-out
    rows and the validation set, so its `score` is that accuracy), params and (optionally)
    a model."""
    with mlflow.start_run(experiment_id=experiment_id) as active:
        mlflow.log_metrics({"tuned_execution_accuracy": accuracy, "eval_loss": eval_loss,
                            "tuned_exact_match": accuracy - 0.01,
                            "validation_tuned_execution_accuracy": accuracy,
                            "score": accuracy})  # fmt: skip
        mlflow.log_params({"tunekit.max_steps": 10, "tunekit.lora_r": 16})
        if with_model:
            mlflow.pyfunc.log_model(name="model", python_model=Echo(), pip_requirements=["mlflow"])
    if status != "FINISHED":
        client.set_terminated(active.info.run_id, status)
    return active.info.run_id


@pytest.fixture
def registry_run(platform: Run, request: pytest.FixtureRequest) -> tuple[Run, MlflowClient, str]:
    """The platform's run with an experiment and a registered model name of this test's own."""
    name = request.node.name.replace("_", "-")[:60]
    uri = platform.state.section("mlflow")["tracking_uri"]
    use_login(platform)
    mlflow.set_tracking_uri(uri)
    client = MlflowClient(uri)
    experiment_id = client.create_experiment(name)
    platform.state.update("mlflow", {"experiment_id": experiment_id})
    settings = platform.settings.model_copy(
        update={"experiment_name": name, "registered_model_name": f"m-{name}"}
    )
    return dataclasses.replace(platform, settings=settings), client, experiment_id


def pinned_run(run: Run, run_id: str) -> Run:
    return dataclasses.replace(run, settings=run.settings.model_copy(update={"pin_run_id": run_id}))


def test_best_run_is_registered_with_champion_alias_once(registry_run) -> None:
    run, client, experiment = registry_run
    worse = finetune(client, experiment, accuracy=0.70, eval_loss=0.20)
    tie_high_loss = finetune(client, experiment, accuracy=0.90, eval_loss=0.30)
    best = finetune(client, experiment, accuracy=0.90, eval_loss=0.10)
    finetune(client, experiment, accuracy=0.99, eval_loss=0.01, status="FAILED")  # not finished

    table = compare_runs(run, client)
    assert list(table.run_id) == [best, tie_high_loss, worse]

    first = register_best(run, client)
    name = run.settings.registered_model_name
    champion = client.get_model_version_by_alias(name, CHAMPION)
    assert (first["run_id"], first["version"], first["created"]) == (best, 1, True)
    assert champion.run_id == best and champion.version == "1"
    assert champion.tags["tuned_execution_accuracy"] == "0.9000"
    assert champion.tags["tunekit.run_id"] == best
    assert champion.current_stage in (None, "None")  # aliases, never deprecated stages
    assert run.state.section("registry")["model_uri"] == f"models:/{name}@{CHAMPION}"
    assert mlflow.pyfunc.load_model(f"models:/{name}@{CHAMPION}").predict(["q"]) == ["q"]

    again = register_best(run, client)  # the same best run: its version is found, not created
    assert (again["version"], again["created"]) == (1, False)
    assert len(client.search_model_versions(f"name = '{name}'")) == 1

    # a better run is, by default, the challenger: the champion stays until a rollout decides
    better = finetune(client, experiment, accuracy=0.95, eval_loss=0.50)
    challenged = register_best(run, client)
    assert (challenged["run_id"], challenged["version"], challenged["alias"]) == (
        better, 2, CHALLENGER,
    )  # fmt: skip
    assert client.get_model_version_by_alias(name, CHAMPION).version == "1"
    assert client.get_model_version_by_alias(name, CHALLENGER).version == "2"
    # with promotion=immediate it is the champion at once
    immediate = run.settings.model_copy(update={"promotion": "immediate"})
    moved = register_best(dataclasses.replace(run, settings=immediate), client)
    assert (moved["run_id"], moved["version"], moved["alias"]) == (better, 2, CHAMPION)
    assert client.get_model_version_by_alias(name, CHAMPION).version == "2"
    assert alias_version(client, name, CHALLENGER) is None  # no version is both


def test_a_pinned_run_is_registered_instead_of_the_best(registry_run) -> None:
    run, client, experiment = registry_run
    pinned = finetune(client, experiment, accuracy=0.50, eval_loss=0.9)
    finetune(client, experiment, accuracy=0.80, eval_loss=0.1)
    registered = register_best(pinned_run(run, pinned), client)
    assert (registered["run_id"], registered["pinned"]) == (pinned, True)
    name = run.settings.registered_model_name
    assert client.get_model_version_by_alias(name, CHAMPION).run_id == pinned


def test_nothing_to_register_is_a_clear_error(registry_run) -> None:
    run, client, experiment = registry_run
    with pytest.raises(RuntimeError, match=r"no finished, evaluated fine-tune .* run stage 03"):
        register_best(run, client)
    with pytest.raises(ValueError, match="pin_run_id: 'nope' is not a finished, evaluated"):
        register_best(pinned_run(run, "nope"), client)
    finetune(client, experiment, accuracy=0.5, eval_loss=0.1, with_model=False)
    with pytest.raises(RuntimeError, match="logged no model"):
        register_best(run, client)
    assert not client.search_model_versions(f"name = '{run.settings.registered_model_name}'")


def test_stage_function_reads_the_pin_from_the_settings(registry_run) -> None:
    run, client, experiment = registry_run
    best = finetune(client, experiment, accuracy=0.9, eval_loss=0.1)
    pinned = finetune(client, experiment, accuracy=0.1, eval_loss=0.1)
    assert tunekit.register_model(run)["run_id"] == best
    pinned_run = dataclasses.replace(
        run, settings=run.settings.model_copy(update={"pin_run_id": pinned})
    )
    assert tunekit.register_model(pinned_run)["run_id"] == pinned


# A rollout (issue 29): with `promotion=rollout` a new best is the challenger, and the rollout's
# decision moves the aliases.


def rollout_run(run: Run) -> Run:
    return dataclasses.replace(
        run, settings=run.settings.model_copy(update={"promotion": "rollout"})
    )


def test_with_rollouts_a_new_best_is_the_challenger_and_the_champion_is_still_served(
    registry_run,
) -> None:
    run, client, experiment = registry_run
    run, name = rollout_run(run), run.settings.registered_model_name
    first = finetune(client, experiment, accuracy=0.70, eval_loss=0.2)
    registered = register_best(run, client)  # no champion yet: it is one at once
    assert (registered["alias"], registered["version"], registered["champion_version"]) == (
        CHAMPION, 1, 1,
    )  # fmt: skip
    better = finetune(client, experiment, accuracy=0.80, eval_loss=0.2)
    challenged = register_best(run, client)
    assert (challenged["run_id"], challenged["alias"], challenged["version"]) == (
        better, CHALLENGER, 2,
    )  # fmt: skip
    assert challenged["model_uri"] == f"models:/{name}@{CHALLENGER}"
    assert client.get_model_version_by_alias(name, CHAMPION).run_id == first
    assert client.get_model_version_by_alias(name, CHALLENGER).run_id == better
    # what 05 and 06 serve is still the champion, not the version 04 registered last
    assert champion_version(run) == "1"
    again = register_best(run, client)  # the same best: still the challenger, nothing new
    assert (again["alias"], again["version"], again["created"]) == (CHALLENGER, 2, False)


def champion_then_challenger(run: Run, client: MlflowClient, experiment: str) -> str:
    """Two fine-tunes registered with rollouts: version 1 the champion, version 2 (the
    better) the challenger; the challenger's run id."""
    finetune(client, experiment, accuracy=0.70, eval_loss=0.2)
    register_best(run, client)
    better = finetune(client, experiment, accuracy=0.80, eval_loss=0.2)
    register_best(run, client)
    return better


def test_a_promotion_moves_the_champion_and_keeps_the_old_one_as_previous(registry_run) -> None:
    run, client, experiment = registry_run
    run, name = rollout_run(run), run.settings.registered_model_name
    champion_then_challenger(run, client, experiment)
    good = Live(requests=300, failures=0, p95_s=0.5, accuracy=0.8)
    decision = decide(Live(3000, 3, 0.5, 0.7), good)
    assert conclude(client, name, decision) == {CHAMPION: "2", PREVIOUS: "1"}
    assert alias_version(client, name, CHALLENGER) is None
    promoted = client.get_model_version(name, "2")
    assert promoted.tags[DECISION_TAG] == "promoted"
    assert json.loads(promoted.tags[f"{DECISION_TAG}.numbers"])["challenger_requests"] == 300


def test_a_rollback_keeps_the_champion_and_says_why_on_the_challenger(registry_run) -> None:
    run, client, experiment = registry_run
    run, name = rollout_run(run), run.settings.registered_model_name
    champion_then_challenger(run, client, experiment)
    erring = Live(requests=300, failures=9, p95_s=0.5, accuracy=0.8)
    assert conclude(client, name, decide(Live(3000, 3, 0.5, 0.7), erring)) == {CHAMPION: "1"}
    assert alias_version(client, name, CHALLENGER) is None
    said = client.get_model_version(name, "2").tags[DECISION_TAG]
    assert said.startswith("rolled back: 9 of 300 requests failed"), said
    with pytest.raises(RuntimeError, match="no 'challenger' alias: nothing to conclude"):
        conclude(client, name, decide(Live(3000, 3, 0.5, 0.7), erring))
    with pytest.raises(ValueError, match="verdict: wait"):
        conclude(client, name, decide(Live(3000, 3, 0.5, 0.7), Live(5, 0, 0.5, 0.8)))


def test_a_conclusion_is_refused_when_the_challenger_moved_since_it_was_measured(
    registry_run,
) -> None:
    run, client, experiment = registry_run
    run, name = rollout_run(run), run.settings.registered_model_name
    champion_then_challenger(run, client, experiment)
    good = decide(Live(3000, 3, 0.5, 0.7), Live(300, 0, 0.5, 0.8))
    with pytest.raises(RuntimeError, match="now names version 2, not the version 5"):
        conclude(client, name, good, measured="5")
    assert alias_version(client, name, CHAMPION).version == "1"
    assert alias_version(client, name, CHALLENGER).version == "2"


def test_a_version_a_rollout_rolled_back_is_not_aliased_again_unless_pinned(
    registry_run, capsys
) -> None:
    run, client, experiment = registry_run
    run, name = rollout_run(run), run.settings.registered_model_name
    rejected = champion_then_challenger(run, client, experiment)
    conclude(client, name, decide(Live(3000, 3, 0.5, 0.7), Live(300, 9, 0.5, 0.8)))
    for settings in (run, dataclasses.replace(run, settings=run.settings.model_copy(
            update={"promotion": "immediate"}))):  # fmt: skip
        again = register_best(settings, client)  # still the best by score
        assert (again["alias"], again["champion_version"], again["challenger_version"]) == (
            "", 1, "",
        )  # fmt: skip
        assert "version 2 was rolled back by a rollout" in capsys.readouterr().out
        assert alias_version(client, name, CHALLENGER) is None
        assert alias_version(client, name, CHAMPION).version == "1"
    pinned = register_best(pinned_run(run, rejected), client)  # asked for by name: tried again
    assert (pinned["alias"], pinned["version"]) == (CHALLENGER, 2)

"""Two LoRA adapters on one base model, rows of both in one `generate` call, and one server
answering for both with a traffic split (issue 29).

The serving of a rollout answers champion and challenger requests from one process: PEFT's
mixed-adapter batches (`adapter_names`, a name per row; peft 0.21 docs, "Inference with
different LoRA adapters in the same batch"). The base is the kit's tiny-gemma2; the two
adapters are LoRA weights initialised at random (`init_lora_weights=False`) and differently,
so they answer differently where a test needs them to.
"""

from __future__ import annotations

import random
import tempfile
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import requests
import torch

from tunekit.grammar import sql_grammar
from tunekit.inference import generate_batch
from tunekit.models import TINY_DIR
from tunekit.promotion import Rule, watch
from tunekit.prompts import build_prompt
from tunekit.serve import Decoding, create_app
from tunekit.serving_metrics import read
from tunekit.traffic import CHALLENGER, CHAMPION, Split

from .test_serve_faults import Server

QUESTIONS = [
    ("How many games had a week of 3?", "CREATE TABLE game (venue TEXT, week INT)"),
    ("Who is the youngest pilot?", "CREATE TABLE pilot (name TEXT, age INT)"),
    ("Name the coach from Leeds", "CREATE TABLE table_name_7 (coach VARCHAR, city VARCHAR)"),
    ("How many ships sail under the flag of Peru?", "CREATE TABLE ship (name TEXT, flag TEXT)"),
]  # fmt: skip
PROMPTS = [build_prompt(q, c) for q, c in QUESTIONS]


@pytest.fixture(scope="module")
def two_adapters() -> tuple[Any, Any]:
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    base = AutoModelForCausalLM.from_pretrained(TINY_DIR)
    config = LoraConfig(r=8, lora_alpha=64, target_modules=["q_proj", "v_proj", "o_proj"],
                        init_lora_weights=False)  # fmt: skip
    torch.manual_seed(1)
    model = get_peft_model(base, config)  # the champion's adapter: PEFT's "default"
    torch.manual_seed(2)
    model.add_adapter("challenger", config)
    return model.eval(), AutoTokenizer.from_pretrained(TINY_DIR)


def answers(components: tuple[Any, Any], adapters: list[str], grammars: bool = False) -> list[str]:
    model, tokenizer = components
    return generate_batch(
        model, tokenizer, PROMPTS, [12] * len(PROMPTS), [0.0] * len(PROMPTS),
        [sql_grammar(q, c) for q, c in QUESTIONS] if grammars else None, adapters,
    )  # fmt: skip


@pytest.mark.parametrize("constrained", [False, True])
def test_rows_of_two_adapters_in_one_call_answer_as_each_adapter_alone(
    two_adapters, constrained
) -> None:
    champion = answers(two_adapters, ["default"] * 4, constrained)
    challenger = answers(two_adapters, ["challenger"] * 4, constrained)
    assert champion != challenger  # the adapters differ, or this test would prove nothing
    mixed = ["default", "challenger", "challenger", "default"]
    expected = [(champion if a == "default" else challenger)[i] for i, a in enumerate(mixed)]
    assert answers(two_adapters, mixed, constrained) == expected


def test_an_adapter_the_model_does_not_have_is_refused(two_adapters) -> None:
    with pytest.raises(ValueError, match="nope"):
        answers(two_adapters, ["default", "nope", "default", "default"])


def test_the_split_sends_its_share_to_the_challenger_and_a_named_adapter_where_asked() -> None:
    both = {CHAMPION: "3", CHALLENGER: "4"}
    split = Split(0.1, draw=random.Random(0).random)
    chosen = Counter(split.choose(None, both) for _ in range(10_000))
    assert 900 < chosen[CHALLENGER] < 1100
    assert split.choose(CHAMPION, both) == CHAMPION and split.choose(CHALLENGER, both) == CHALLENGER
    assert {Split(1.0).choose(None, {CHAMPION: "3"}) for _ in range(50)} == {CHAMPION}
    assert {Split(0.0).choose(None, both) for _ in range(50)} == {CHAMPION}
    with pytest.raises(ValueError, match=r"'nope' is not served here \(serving: challenger, champ"):
        split.choose("nope", both)
    with pytest.raises(ValueError, match="challenger_share"):
        Split(1.5)


def test_one_server_answers_for_champion_and_challenger(two_adapters) -> None:
    """Requests naming an adapter get its answer and version; the rest are shared by the
    split; both kinds share generate calls; the metrics count each adapter's own."""
    model, tokenizer = two_adapters
    expected = {
        CHAMPION: answers(two_adapters, ["default"] * 4),
        CHALLENGER: answers(two_adapters, ["challenger"] * 4),
    }
    app = create_app(
        "models:/m@champion", load=lambda _: (model, tokenizer, "3"),
        decoding=Decoding(constrained=False), challenger_uri="models:/m@challenger",
        split=Split(0.5, draw=random.Random(1).random), add_challenger=lambda _m, _u: "4",
    )  # fmt: skip

    def ask(i: int, adapter: str | None = None) -> dict:
        body = {"prompt": PROMPTS[i % 4], "max_new_tokens": 12, "adapter": adapter}
        got = requests.post(f"{server.url}/predict", json=body, timeout=120)
        assert got.status_code == 200, got.text
        return {**got.json(), "i": i % 4}

    with Server(app) as server:
        assert server.ready()["adapters"] == {CHAMPION: "3", CHALLENGER: "4"}
        named = [ask(0, CHAMPION), ask(0, CHALLENGER)]
        assert [(a["adapter"], a["model_version"]) for a in named] == [
            (CHAMPION, "3"), (CHALLENGER, "4"),
        ]  # fmt: skip
        assert named[1]["model_uri"] == "models:/m@challenger"
        with ThreadPoolExecutor(8) as pool:
            shared = list(pool.map(ask, range(40)))
        assert {a["adapter"] for a in shared} == {CHAMPION, CHALLENGER}
        assert all(a["sql"] == expected[a["adapter"]][a["i"]] for a in shared + named)
        assert server.ready()["generate_calls"] < 42  # rows of both adapters went together
        asked_v9 = {"prompt": PROMPTS[0], "adapter": "v9"}
        refused = requests.post(f"{server.url}/predict", json=asked_v9, timeout=30)
        assert refused.status_code == 422 and "'v9' is not served here" in refused.text
        counted = read(requests.get(f"{server.url}/metrics", timeout=10).text)
    by_adapter = Counter(a["adapter"] for a in shared + named)
    assert {a: counted[a].requests for a in (CHAMPION, CHALLENGER)} == by_adapter
    assert counted["unrouted"].requests == 1  # the request for an adapter not served


def _alone(model: Any, adapter: str) -> Any:
    """A model with only `adapter` of `model` (as a fine-tune has one), as its `default`."""
    from peft import get_peft_model, get_peft_model_state_dict, set_peft_model_state_dict
    from transformers import AutoModelForCausalLM

    single = get_peft_model(AutoModelForCausalLM.from_pretrained(TINY_DIR),
                            model.peft_config[adapter])  # fmt: skip
    set_peft_model_state_dict(single, get_peft_model_state_dict(model, adapter_name=adapter))
    return single.eval()


def _log_finetune(client: Any, experiment_id: str, model: Any, tokenizer: Any) -> str:
    """An MLflow run holding `model`'s adapter as the kit logs a fine-tune's (the pyfunc)."""
    import mlflow

    from tunekit.model_logging import log_adapter
    from tunekit.settings import Settings

    example = {"question": QUESTIONS[0][0], "context": QUESTIONS[0][1]}
    with mlflow.start_run(experiment_id=experiment_id) as active:
        uri = log_adapter(model, tokenizer, str(TINY_DIR), Settings(), example)
    return client.create_model_version(
        "rollout", uri, run_id=active.info.run_id, model_id=uri.removeprefix("models:/")
    ).version


def test_the_challengers_adapter_is_loaded_from_the_registry_beside_the_champions(
    platform, two_adapters
) -> None:
    """The real path: two logged fine-tunes, aliased; the champion loaded as a server loads
    it, the challenger's adapter added from its registered version; then one generate call
    answers for both as each answers alone. A challenger tuned from another base is refused."""
    import mlflow
    from mlflow import MlflowClient
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from tunekit.serve import load_components
    from tunekit.stages import use_login
    from tunekit.traffic import load_challenger

    use_login(platform)
    uri = platform.state.section("mlflow")["tracking_uri"]
    mlflow.set_tracking_uri(uri)
    client = MlflowClient(uri)
    experiment = client.create_experiment("rollout")
    client.create_registered_model("rollout")
    model, tokenizer = two_adapters
    champion = _log_finetune(client, experiment, _alone(model, "default"), tokenizer)
    challenger = _log_finetune(client, experiment, _alone(model, "challenger"), tokenizer)
    client.set_registered_model_alias("rollout", "champion", champion)
    client.set_registered_model_alias("rollout", "challenger", challenger)

    served, served_tokenizer, version = load_components("models:/rollout@champion")
    assert version == champion
    assert load_challenger(served, "models:/rollout@challenger") == challenger
    mixed = ["default", "challenger", "challenger", "default"]
    alone = {a: answers(two_adapters, [a] * 4) for a in ("default", "challenger")}
    got = answers((served, served_tokenizer), mixed)
    assert got == [alone[a][i] for i, a in enumerate(mixed)]

    other_base = AutoModelForCausalLM.from_pretrained(TINY_DIR)
    stranger = get_peft_model(other_base, LoraConfig(r=4, target_modules=["q_proj"]))
    stranger.peft_config["default"].base_model_name_or_path = "google/gemma-2-2b"
    odd = _log_finetune(client, experiment, stranger, tokenizer)
    client.set_registered_model_alias("rollout", "challenger", odd)
    with pytest.raises(ValueError, match=r"tuned from 'google/gemma-2-2b'.*one base serves both"):
        load_challenger(served, "models:/rollout@challenger")


class ChallengerFails:
    """The two-adapter model, whose generate fails on any call with a challenger row: a
    challenger whose serving errors (the champion's rows are the real model's)."""

    def __init__(self, model: Any):
        self.model = model

    def generate(self, **kwargs: Any) -> Any:
        if CHALLENGER in (kwargs.get("adapter_names") or []):
            raise RuntimeError("the challenger's weights are broken")
        return self.model.generate(**kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.model, name)


class Load:
    """Requests naming no adapter, sent by `workers` threads until stopped: user traffic."""

    def __init__(self, url: str, workers: int = 6):
        self.url, self.answers, self.stop = url, [], threading.Event()
        self.threads = [threading.Thread(target=self._send, args=(i,)) for i in range(workers)]

    def _send(self, i: int) -> None:
        while not self.stop.is_set():
            body = {"prompt": PROMPTS[i % 4], "max_new_tokens": 8}
            got = requests.post(f"{self.url}/predict", json=body, timeout=60)
            adapter = got.json().get("adapter") if got.status_code == 200 else None
            self.answers.append((got.status_code, adapter))
            i += 1

    def __enter__(self) -> Load:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(60)


EQUAL = {CHAMPION: 0.5, CHALLENGER: 0.5}  # validation accuracies that pass the rule


def scraper(url: str) -> Any:
    return lambda: requests.get(f"{url}/metrics", timeout=10).text


def _rollout_app(model: Any, tokenizer: Any, versions: tuple[str, str] = ("3", "4")) -> Any:
    return create_app(
        "models:/m@champion", load=lambda _: (model, tokenizer, versions[0]),
        decoding=Decoding(constrained=False), challenger_uri="models:/m@challenger",
        split=Split(0.3, draw=random.Random(2).random), add_challenger=lambda _m, _u: versions[1],
    )  # fmt: skip


def _twin(model: Any) -> Any:
    """The champion's adapter twice: as `default` and as the challenger."""
    from peft import get_peft_model_state_dict, set_peft_model_state_dict

    twin = _alone(model, "default")
    twin.add_adapter(CHALLENGER, model.peft_config["default"])
    set_peft_model_state_dict(twin, get_peft_model_state_dict(model, adapter_name="default"),
                              adapter_name=CHALLENGER)  # fmt: skip
    return twin.eval()


def test_a_challenger_whose_serving_fails_is_rolled_back_and_no_champion_request_fails(
    two_adapters,
) -> None:
    """Rows of both adapters share calls; a call the challenger breaks is retried an adapter
    at a time, so only the challenger's requests fail, and the rule rolls it back as soon as
    its failures pass the bar."""
    model, tokenizer = two_adapters
    rule = Rule(min_requests=40, max_error_rate=0.05)  # rolled back at its 2nd failure
    with (
        Server(_rollout_app(ChallengerFails(model), tokenizer)) as server,
        Load(server.url) as load,
    ):
        decision = watch(scraper(server.url), EQUAL, rule, deadline_s=120, every_s=0.2)
        load.__exit__()
        served = read(scraper(server.url)())
    assert decision.verdict == "rollback" and "requests failed" in decision.reasons[0], decision
    assert served[CHAMPION].requests > 0 and served[CHAMPION].failures == 0
    assert served[CHALLENGER].failures == served[CHALLENGER].requests >= 2
    assert {a for code, a in load.answers if code == 200} == {CHAMPION}


def test_a_challenger_as_good_as_the_champion_is_promoted_under_load(two_adapters) -> None:
    """The same adapter twice: the same answers, the same latency (they share calls)."""
    model, tokenizer = two_adapters
    twin = _twin(model)
    # the latency bar itself is tested on exact numbers (test_promotion.py); here two adapters'
    # p95 of a few dozen requests on a busy two-core machine, so a wider bar
    rule = Rule(min_requests=40, max_error_rate=0.05, max_p95_ratio=1.5)
    with Server(_rollout_app(twin, tokenizer)) as server, Load(server.url) as load:
        decision = watch(scraper(server.url), EQUAL, rule, deadline_s=120, every_s=0.2)
    assert decision.verdict == "promote", decision
    assert {code for code, _ in load.answers} == {200}
    assert decision.numbers["challenger_requests"] >= 40


@pytest.fixture
def registered(platform, request: pytest.FixtureRequest) -> tuple[Any, Any, str]:
    """The platform's run with a registered model of this test's own: version 1 the
    champion, version 2 the challenger (as stage 04 leaves them with promotion=rollout)."""
    import dataclasses

    import mlflow
    from mlflow import MlflowClient

    from tunekit.stages import use_login

    name = f"ro-{request.node.name[-40:]}".replace("_", "-")
    use_login(platform)
    uri = platform.state.section("mlflow")["tracking_uri"]
    mlflow.set_tracking_uri(uri)
    client = MlflowClient(uri)
    experiment = client.create_experiment(name)
    with mlflow.start_run(experiment_id=experiment):
        logged = mlflow.pyfunc.log_model(name="model", python_model=_echo,
                                         pip_requirements=["mlflow"])  # fmt: skip
    client.create_registered_model(name)
    for _ in ("1", "2"):
        client.create_model_version(name, logged.model_uri, model_id=logged.model_id)
    client.set_registered_model_alias(name, CHAMPION, "1")
    client.set_registered_model_alias(name, CHALLENGER, "2")
    settings = platform.settings.model_copy(update={"registered_model_name": name})
    run = dataclasses.replace(platform, settings=settings)
    run.state.update("registry", {"registered_model_name": name, "version": 2,
                                  "alias": CHALLENGER, "champion_version": 1,
                                  "challenger_version": 2,
                                  "model_uri": f"models:/{name}@{CHALLENGER}"})  # fmt: skip
    return run, client, name


def _echo(model_input: list[str]) -> list[str]:
    """A pyfunc model that is only a registry entry here (the server is given its model)."""
    return model_input


def _post(url: str, body: dict) -> dict:
    response = requests.post(url, json=body, timeout=120)
    response.raise_for_status()
    return response.json()


def _read(url: str) -> str:
    return requests.get(url, timeout=30).text


def _roll_out(run: Any, client: Any, model: Any, tokenizer: Any, rule: Rule) -> dict:
    """`roll_out` on a server of `model` (champion version 1, challenger 2), 12 rows."""
    from tunekit.eval_sets import validation_rows
    from tunekit.promotion import roll_out

    with Server(_rollout_app(model, tokenizer, ("1", "2"))) as server:
        run.state.update("serving", {"fastapi": {"url": server.url}})
        return roll_out(run, client, _post, _read, validation_rows(12), rule, deadline_s=60)


def test_a_rollout_of_a_challenger_as_good_promotes_it_and_moves_the_aliases(
    registered, two_adapters
) -> None:
    from tunekit.promotion import PREVIOUS

    run, client, name = registered
    model, tokenizer = two_adapters
    record = _roll_out(
        run, client, _twin(model), tokenizer, Rule(min_requests=12, max_p95_ratio=1.5)
    )
    assert record["verdict"] == "promoted", record
    assert record["aliases"] == {CHAMPION: "2", PREVIOUS: "1"}
    assert client.get_model_version(name, "2").tags["tunekit.rollout"] == "promoted"
    registry = run.state.section("registry")
    assert (registry["champion_version"], registry["challenger_version"]) == (2, "")
    assert registry["model_uri"] == f"models:/{name}@{CHAMPION}"  # the alias the rollout left
    assert record["numbers"]["challenger_requests"] == 12
    assert run.state.section("rollout")["verdict"] == "promoted"


def test_a_rollout_of_a_failing_challenger_rolls_it_back_and_keeps_the_champion(
    registered, two_adapters
) -> None:
    from tunekit.eval_sets import validation_rows
    from tunekit.promotion import roll_out

    run, client, name = registered
    model, tokenizer = two_adapters
    record = _roll_out(run, client, ChallengerFails(model), tokenizer, Rule(min_requests=12))
    assert record["verdict"] == "rolled back", record
    # its validation answers all failed (asked before the first look at the numbers)
    assert record["reasons"][0].startswith("12 of 12 requests failed"), record["reasons"]
    assert record["numbers"]["champion_error_rate"] == 0
    assert record["aliases"] == {CHAMPION: "1"}
    said = client.get_model_version(name, "2").tags["tunekit.rollout"]
    assert said.startswith("rolled back: "), said
    registry = run.state.section("registry")
    assert (registry["champion_version"], registry["challenger_version"]) == (1, "")
    with pytest.raises(RuntimeError, match="no challenger to roll out"):
        roll_out(run, client, _post, _read, validation_rows(12))


TAUGHT_ROWS = 12  # the validation rows both adapters below are taught (the rollout asks them)


@pytest.fixture(scope="module")
def taught() -> tuple[Any, Any]:
    """Two adapters trained (TRL's SFTTrainer, the kit's LoRA target) on the same validation
    questions: the champion on their SQL, the challenger on each other's SQL (each question
    taught the next one's answer). The challenger serves as fast and without an error: it
    only answers wrongly. 40 steps of 8 rows each, about 10 s on two cores."""
    import datasets
    from peft import (
        LoraConfig,
        get_peft_model,
        get_peft_model_state_dict,
        set_peft_model_state_dict,
    )
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    from tunekit.eval_sets import validation_rows
    from tunekit.prompts import build_example

    tokenizer = AutoTokenizer.from_pretrained(TINY_DIR)
    rows = validation_rows(TAUGHT_ROWS)
    shifted = [{**r, "answer": rows[(i + 1) % len(rows)]["answer"]} for i, r in enumerate(rows)]
    config = LoraConfig(r=16, lora_alpha=32, target_modules="all-linear")

    def teach(taught_rows: list[dict[str, str]], folder: str) -> dict[str, Any]:
        torch.manual_seed(0)
        examples = [build_example(r, tokenizer.eos_token) for r in taught_rows]
        args = SFTConfig(
            output_dir=folder, max_steps=40, per_device_train_batch_size=8, learning_rate=3e-3,
            lr_scheduler_type="constant", completion_only_loss=True, save_strategy="no",
            report_to=[], use_cpu=True, disable_tqdm=True,
        )  # fmt: skip
        trainer = SFTTrainer(
            model=AutoModelForCausalLM.from_pretrained(TINY_DIR),
            args=args,
            train_dataset=datasets.Dataset.from_list(examples),
            processing_class=tokenizer,
            peft_config=config,
        )
        trainer.train()
        return get_peft_model_state_dict(trainer.model)

    with tempfile.TemporaryDirectory() as folder:
        right, wrong = teach(rows, folder), teach(shifted, folder)
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(TINY_DIR), config)
    set_peft_model_state_dict(model, right)
    model.add_adapter(CHALLENGER, config)
    set_peft_model_state_dict(model, wrong, adapter_name=CHALLENGER)
    return model.eval(), tokenizer


def test_a_rollout_of_a_challenger_trained_to_answer_wrongly_rolls_it_back_under_load(
    registered, taught
) -> None:
    """A challenger that serves well and answers badly: no request fails and its latency
    is the champion's, so only its answers to the validation set asked through the live
    endpoint tell; the rule rolls it back on them and the aliases stay the champion's."""
    from tunekit.eval_sets import validation_rows
    from tunekit.promotion import roll_out

    run, client, name = registered
    model, tokenizer = taught
    with (
        Server(_rollout_app(model, tokenizer, ("1", "2"))) as server,
        Load(server.url, workers=2) as load,
    ):
        run.state.update("serving", {"fastapi": {"url": server.url}})
        rule = Rule(min_requests=TAUGHT_ROWS, max_p95_ratio=1.5)
        record = roll_out(
            run, client, _post, _read, validation_rows(TAUGHT_ROWS), rule, deadline_s=120
        )
    assert record["verdict"] == "rolled back", record
    assert any("validation accuracy" in reason for reason in record["reasons"]), record
    numbers = record["numbers"]
    # the champion answers its taught questions; the challenger answers none of them
    assert (numbers["champion_accuracy"], numbers["challenger_accuracy"]) == (1.0, 0.0), numbers
    assert numbers["champion_error_rate"] == numbers["challenger_error_rate"] == 0
    assert {code for code, _ in load.answers} == {200}  # while it served, nothing failed
    assert {adapter for _, adapter in load.answers} == {CHAMPION, CHALLENGER}
    assert record["aliases"] == {CHAMPION: "1"}
    assert client.get_model_version(name, "2").tags["tunekit.rollout"].startswith("rolled back")
    assert set(client.get_registered_model(name).aliases) == {CHAMPION}


def test_tunekit_rollout_without_a_challenger_says_how_to_get_one(platform) -> None:
    from .conftest import tunekit_cli

    platform.state.update("registry", {"challenger_version": ""})
    done = tunekit_cli("rollout", "--run-dir", str(platform.dir))
    assert done.returncode == 2, done.stdout + done.stderr
    assert "no challenger to roll out: stage 04 registers one with the setting" in done.stdout


def test_a_rollout_with_no_server_answering_says_what_to_run(registered) -> None:
    import tunekit

    run, _, _ = registered
    run.state.update("serving", {"fastapi": {"url": "http://127.0.0.1:9"}})  # nothing listens
    with pytest.raises(RuntimeError, match=r"could not read http://127.0.0.1:9/readyz .*stage 05"):
        tunekit.rollout(run)


def test_a_challenger_that_does_not_load_leaves_the_champion_served(two_adapters) -> None:
    model, tokenizer = two_adapters

    def refuse(_model: Any, _uri: str) -> str:
        raise ValueError("the challenger was tuned from another base")

    app = create_app("models:/m@champion", load=lambda _: (model, tokenizer, "3"),
                     decoding=Decoding(constrained=False), challenger_uri="models:/m/4",
                     add_challenger=refuse)  # fmt: skip
    with Server(app) as server:
        ready = server.ready()
        assert ready["adapters"] == {CHAMPION: "3"}
        assert "tuned from another base" in ready["challenger_error"]
        body = {"prompt": PROMPTS[0], "max_new_tokens": 4}
        answered = requests.post(f"{server.url}/predict", json=body, timeout=60)
        assert answered.status_code == 200 and answered.json()["adapter"] == CHAMPION
        asked = requests.post(f"{server.url}/predict", json={**body, "adapter": CHALLENGER},
                              timeout=60)  # fmt: skip
        assert asked.status_code == 422 and "'challenger' is not served" in asked.text

"""The promotion rule of a rollout (`tunekit.rollout`): the challenger promoted on live numbers,
or rolled back.

The same code decides locally and on GKE; only where the numbers come from differs (a scrape of
the servers' `/metrics`, `tunekit.serving_metrics`). Over the rollout's window, with at least
`min_requests` answered by the challenger, it is promoted when all three hold:

- its failure rate is under `max_error_rate` (1%);
- its p95 latency is within `max_p95_ratio` (1.1x) of the champion's over the same window;
- its answers to the validation set, asked through the live endpoint, are at least as accurate
  as the champion's (the validation set: what chooses; the test set chooses nothing).

Otherwise it is rolled back, each reason stated. Too few requests yet: wait, unless so many have
failed that the rate cannot end under the bar: then it is rolled back at once, so a failing
challenger costs as few of its share's requests as the bar allows.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Literal

from tunekit.records import RolloutRecord
from tunekit.registry import CHALLENGER, CHAMPION, DECISION_TAG, alias_version
from tunekit.run import Run
from tunekit.serving_metrics import AdapterNumbers, read

Verdict = Literal["promote", "rollback", "wait"]
PREVIOUS = "previous"  # the champion a promotion replaced: one alias away from going back
# DECISION_TAG (registry): on the challenger's version, the decision and its reasons
# (and under DECISION_TAG.numbers, the live numbers it was made on, as JSON)


@dataclass(frozen=True)
class Rule:
    """The bars a challenger must clear (the settings `rollout_*` give them)."""

    min_requests: int = 200
    max_error_rate: float = 0.01
    max_p95_ratio: float = 1.1

    def __post_init__(self) -> None:
        if self.min_requests < 1:
            raise ValueError(f"min_requests: must be at least 1 (got {self.min_requests})")
        if not 0 <= self.max_error_rate < 1:
            raise ValueError(f"max_error_rate: must be in [0, 1) (got {self.max_error_rate})")
        if self.max_p95_ratio < 1:
            raise ValueError(f"max_p95_ratio: must be at least 1 (got {self.max_p95_ratio})")


@dataclass(frozen=True)
class Live:
    """One adapter's numbers over the rollout's window."""

    requests: int
    failures: int
    p95_s: float
    accuracy: float | None = None  # the validation set through the live endpoint

    @classmethod
    def of(cls, numbers: AdapterNumbers, accuracy: float | None = None) -> Live:
        return cls(numbers.requests, numbers.failures, numbers.quantile(0.95), accuracy)

    @property
    def error_rate(self) -> float:
        return self.failures / self.requests if self.requests else 0.0


@dataclass(frozen=True)
class Decision:
    verdict: Verdict
    reasons: list[str] = field(default_factory=list)  # why not promoted (empty when promoted)
    numbers: dict[str, float | int | None] = field(default_factory=dict)

    def summary(self) -> str:
        if self.verdict == "promote":
            return "promote: every bar cleared"
        return f"{self.verdict}: " + "; ".join(self.reasons)


def decide(champion: Live, challenger: Live, rule: Rule | None = None) -> Decision:
    """Promote, roll back or wait, by `rule`, on the two adapters' numbers of one window."""
    rule = rule or Rule()
    numbers: dict[str, float | int | None] = {
        "challenger_requests": challenger.requests,
        "champion_requests": champion.requests,
        "challenger_error_rate": challenger.error_rate,
        "champion_error_rate": champion.error_rate,
        "challenger_p95_s": challenger.p95_s,
        "champion_p95_s": champion.p95_s,
        "challenger_accuracy": challenger.accuracy,
        "champion_accuracy": champion.accuracy,
    }
    # so many failures that even the window's end could not bring the rate under the bar
    window = max(rule.min_requests, challenger.requests)
    if challenger.failures and challenger.failures >= rule.max_error_rate * window:
        reason = (
            f"{challenger.failures} of {challenger.requests} requests failed "
            f"({challenger.error_rate:.1%}; the bar is under {rule.max_error_rate:.1%})"
        )
        return Decision("rollback", [reason], numbers)
    if challenger.requests < rule.min_requests:
        waiting = f"{challenger.requests} of {rule.min_requests} requests so far"
        return Decision("wait", [waiting], numbers)
    reasons = []
    if challenger.error_rate >= rule.max_error_rate:
        reasons.append(f"error rate {challenger.error_rate:.1%} (the bar is under "
                       f"{rule.max_error_rate:.1%})")  # fmt: skip
    if not challenger.p95_s <= rule.max_p95_ratio * champion.p95_s:
        reasons.append(f"p95 latency {challenger.p95_s:.3f} s against the champion's "
                       f"{champion.p95_s:.3f} s (the bar is {rule.max_p95_ratio}x)")  # fmt: skip
    if challenger.accuracy is None or champion.accuracy is None:
        reasons.append("the validation set was not asked of both through the live endpoint")
    elif challenger.accuracy < champion.accuracy:
        reasons.append(f"validation accuracy {challenger.accuracy:.1%} against the champion's "
                       f"{champion.accuracy:.1%}")  # fmt: skip
    return Decision("rollback" if reasons else "promote", reasons, numbers)


def conclude(
    client: Any, name: str, decision: Decision, measured: str | None = None
) -> dict[str, str]:
    """Move `name`'s aliases as `decision` says, and record it on the challenger's version.

    Promoted: `previous` names the old champion, `champion` the challenger. Rolled back: the
    champion stays. Either way `challenger` goes, last, so a conclusion cut short can run
    again. Refused when `challenger` no longer names the `measured` version (another stage 04
    moved it meanwhile). Answers the versions the aliases name afterwards.
    """
    if decision.verdict == "wait":
        raise ValueError("the rollout has not decided yet (verdict: wait): nothing to conclude")
    challenger = alias_version(client, name, CHALLENGER)
    if challenger is None:
        raise RuntimeError(f"model {name!r} has no {CHALLENGER!r} alias: nothing to conclude")
    if measured is not None and str(challenger.version) != str(measured):
        raise RuntimeError(f"{CHALLENGER!r} now names version {challenger.version}, not the "
                           f"version {measured} the numbers are of: nothing concluded")  # fmt: skip
    if decision.verdict == "promote":
        champion = alias_version(client, name, CHAMPION)
        if champion is not None and champion.version != challenger.version:
            client.set_registered_model_alias(name, PREVIOUS, champion.version)
        client.set_registered_model_alias(name, CHAMPION, challenger.version)
    verdict = {"promote": "promoted", "rollback": "rolled back"}[decision.verdict]
    said = f"{verdict}: {'; '.join(decision.reasons)}" if decision.reasons else verdict
    client.set_model_version_tag(name, challenger.version, DECISION_TAG, said)
    client.set_model_version_tag(
        name, challenger.version, f"{DECISION_TAG}.numbers", json.dumps(decision.numbers)
    )
    client.delete_registered_model_alias(name, CHALLENGER)
    return {
        alias: version.version
        for alias in (CHAMPION, PREVIOUS)
        if (version := alias_version(client, name, alias)) is not None
    }


def validation_accuracy(
    ask: Callable[[dict[str, str], str], str],
    rows: list[dict[str, str]],
    adapters: tuple[str, str] = (CHAMPION, CHALLENGER),
    workers: int = 8,
) -> dict[str, float]:
    """Execution accuracy of each adapter's answers to `rows` (the validation set: it may
    choose), asked through the live endpoint by `ask(row, adapter)`: row by row, the adapter
    that goes first alternating, so neither pays the other's warm-up (the server caches each
    context's compiled grammar) in the latency the rule compares."""
    from tunekit.evaluate import evaluate

    pairs = [(row, a) for i, row in enumerate(rows) for a in adapters[:: 1 if i % 2 else -1]]
    with ThreadPoolExecutor(workers) as pool:
        answers = list(pool.map(lambda pair: ask(*pair), pairs))
    return {
        adapter: float(evaluate(
            [row for row, a in pairs if a == adapter],
            [sql for (_, a), sql in zip(pairs, answers, strict=True) if a == adapter],
        )["execution_accuracy"])
        for adapter in adapters
    }  # fmt: skip


def watch(
    scrape: Callable[[], str],
    accuracy: dict[str, float],
    rule: Rule | None = None,
    deadline_s: float = 600,
    every_s: float = 1.0,
    start: dict[str, AdapterNumbers] | None = None,
) -> Decision:
    """Decide on the numbers of the requests served since `start` (a `read` scrape; default:
    now): `scrape` gives the server's `/metrics` text (read every `every_s`), `accuracy` each
    adapter's validation accuracy. No decision by `deadline_s` is a rollback: the challenger
    had too little traffic to be judged."""
    rule = rule or Rule()
    start, ends = start if start is not None else read(scrape()), time.monotonic() + deadline_s
    while True:
        now = read(scrape())
        live = {
            alias: Live.of(
                now.get(alias, AdapterNumbers()).since(start.get(alias, AdapterNumbers())),
                accuracy.get(alias),
            )
            for alias in (CHAMPION, CHALLENGER)
        }
        decision = decide(live[CHAMPION], live[CHALLENGER], rule)
        if decision.verdict != "wait":
            return decision
        if time.monotonic() >= ends:
            late = f"no decision within {deadline_s:.0f} s: {decision.reasons[0]}"
            return Decision("rollback", [late], decision.numbers)
        time.sleep(every_s)


def roll_out(
    run: Run,
    client: Any,
    post: Callable[[str, dict[str, Any]], dict[str, Any] | None],
    scrape: Callable[[str], str],
    rows: list[dict[str, str]],
    rule: Rule | None = None,
    deadline_s: float = 600,
) -> RolloutRecord:
    """A rollout on the run's FastAPI server (stage 05 serving the challenger beside the
    champion): the validation `rows` asked of each adapter through it, the live numbers
    watched until the rule decides, the aliases moved; recorded (`rollout`, and the champion
    and challenger in `registry`). `post` sends a request, `scrape` reads a URL's text."""
    started = time.monotonic()
    name = run.settings.registered_model_name
    challenger = str(run.state.section("registry").get("challenger_version") or "")
    if not challenger:
        raise RuntimeError("no challenger to roll out: stage 04 registers one with the setting "
                           "promotion=rollout, the default (a new best that is not the "
                           "champion)")  # fmt: skip
    url = run.state.section("serving").get("fastapi", {}).get("url")
    ready = json.loads(scrape(f"{url}/readyz")) if url else {}
    served = ready.get("adapters", {})
    if served.get(CHALLENGER) != challenger:
        error = ready.get("challenger_error")
        why = f"; the challenger did not load: {error}" if error else ""
        raise RuntimeError(f"the FastAPI server does not serve challenger version {challenger} "
                           f"(it serves {served or 'nothing'}{why}): run 05 again")  # fmt: skip
    metrics = f"{url}/metrics"
    window = read(scrape(metrics))  # the validation requests are live requests too

    def ask(row: dict[str, str], adapter: str) -> str:
        body = {"question": row["question"], "context": row["context"], "adapter": adapter}
        try:
            return (post(f"{url}/predict", body) or {}).get("sql", "")
        except Exception:  # a failed request is a wrong answer here; the rule counts it
            return ""

    accuracy = validation_accuracy(ask, rows)
    decision = watch(lambda: scrape(metrics), accuracy, rule, deadline_s, start=window)
    aliases = conclude(client, name, decision, measured=challenger)
    promoted = decision.verdict == "promote"
    run.state.update("registry", {"challenger_version": "", "alias": CHAMPION if promoted else "",
                                  "champion_version": int(aliases[CHAMPION]),
                                  "model_uri": f"models:/{name}@{CHAMPION}"})  # fmt: skip
    return run.state.update(
        "rollout",
        {
            "verdict": "promoted" if promoted else "rolled back",
            "reasons": decision.reasons,
            "challenger_version": int(challenger),
            "aliases": aliases,
            "numbers": decision.numbers,
            "validation_rows": len(rows),
            "seconds": round(time.monotonic() - started, 1),
        },
    )

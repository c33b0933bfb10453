"""The rollout's promotion rule, and the servers' metrics it reads (issue 29).

The numbers in these tests are live numbers as a scrape would give them; the servers that
export them are exercised over real HTTP in tests/test_serve_faults.py."""

from __future__ import annotations

import itertools
import math

import pytest

from tunekit.promotion import Live, Rule, decide
from tunekit.serve import adapter_name
from tunekit.serving_metrics import LATENCY_BUCKETS, AdapterNumbers, ServerMetrics, failed, read

CHAMPION = Live(requests=2000, failures=2, p95_s=1.00, accuracy=0.60)


def test_a_good_challenger_is_promoted() -> None:
    good = Live(requests=250, failures=1, p95_s=1.09, accuracy=0.60)
    decision = decide(CHAMPION, good)
    assert decision.verdict == "promote" and decision.reasons == []
    assert decision.numbers["challenger_requests"] == 250


@pytest.mark.parametrize(
    ("challenger", "named"),
    [
        (Live(250, 3, 1.0, 0.7), "3 of 250 requests failed (1.2%; the bar is under 1.0%)"),
        (Live(250, 0, 1.2, 0.7), "p95 latency 1.200 s against the champion's 1.000 s"),
        (Live(250, 0, 1.0, 0.55), "validation accuracy 55.0% against the champion's 60.0%"),
        (Live(250, 0, 1.0, None), "the validation set was not asked of both"),
        (Live(250, 0, math.nan, 0.7), "p95 latency nan s"),  # no latency measured is no pass
    ],
)
def test_a_challenger_short_of_one_bar_is_rolled_back_saying_which(challenger, named) -> None:
    decision = decide(CHAMPION, challenger)
    assert decision.verdict == "rollback"
    assert any(named in reason for reason in decision.reasons), decision.reasons


def test_too_few_requests_wait_unless_the_failures_already_sink_it() -> None:
    rule = Rule(min_requests=200, max_error_rate=0.01)
    assert decide(CHAMPION, Live(150, 0, 0.5, 0.9), rule).verdict == "wait"
    assert decide(CHAMPION, Live(20, 1, 0.5, 0.9), rule).verdict == "wait"  # 1 of 200 may pass
    # 2 failures: 2 of 200 is 1%, not under it, whatever the next 180 requests do
    early = decide(CHAMPION, Live(20, 2, 0.5, 0.9), rule)
    assert early.verdict == "rollback" and "2 of 20 requests failed" in early.summary()


def test_the_rule_refuses_bars_that_mean_nothing() -> None:
    for bad, named in (({"min_requests": 0}, "min_requests"),
                       ({"max_error_rate": 1.0}, "max_error_rate"),
                       ({"max_p95_ratio": 0.9}, "max_p95_ratio")):  # fmt: skip
        with pytest.raises(ValueError, match=named):
            Rule(**bad)


# The quantile, as Prometheus computes it from the same buckets: linear inside the bucket the
# rank falls in, the lowest bucket starting at 0, a rank in the +Inf bucket answered with the
# highest finite bound (prometheus/prometheus promql/quantile.go `bucketQuantile`; the
# histogram_quantile() documentation says the same).
@pytest.mark.parametrize(
    ("buckets", "q", "expected"),
    [
        ({0.1: 10, 0.2: 30, 0.4: 40, math.inf: 40}, 0.5, 0.15),
        ({0.1: 10, 0.2: 30, 0.4: 40, math.inf: 40}, 0.95, 0.36),
        ({1.0: 10, math.inf: 10}, 0.5, 0.5),
        ({0.1: 5, math.inf: 10}, 0.9, 0.1),
    ],
)
def test_the_p95_is_read_from_the_buckets_as_promql_reads_it(buckets, q, expected) -> None:
    assert AdapterNumbers(40, 0, buckets).quantile(q) == pytest.approx(expected)


def test_no_latency_observed_is_no_quantile() -> None:
    assert math.isnan(AdapterNumbers().quantile(0.95))


def test_a_scrape_reads_back_per_adapter_and_a_window_is_two_scrapes_apart() -> None:
    metrics = ServerMetrics(lambda: 3, "models:/m@champion")
    for adapter, code, seconds in [("champion", 200, 0.2)] * 8 + [("challenger", 200, 0.3)] * 3:
        metrics.observe(adapter, code, seconds)
    metrics.observe("challenger", 422, 0.01)  # the client's fault: counted, not a failure
    before = read(metrics.exposition().decode())
    metrics.observe("challenger", 500, 0.05)
    metrics.observe("challenger", 429, 0.001)
    metrics.observe("challenger", 200, 0.3)
    text = metrics.exposition().decode()
    assert 'vllm:num_requests_waiting{model_name="models:/m@champion"} 3.0' in text
    after = read(text)
    assert (after["champion"].requests, after["champion"].failures) == (8, 0)
    assert (after["challenger"].requests, after["challenger"].failures) == (7, 2)
    window = after["challenger"].since(before["challenger"])
    assert (window.requests, window.failures) == (3, 2)
    assert window.buckets[math.inf] == 3
    hi = min(b for b in LATENCY_BUCKETS if b >= 0.3)  # the 0.3 s answer's bucket
    lo = max(b for b in LATENCY_BUCKETS if b < hi)
    assert lo < window.quantile(0.95) <= hi
    restarted = AdapterNumbers(1, 0, {math.inf: 1})
    assert restarted.since(after["challenger"]) == restarted  # counters reset: counted anew


def test_failures_are_the_servers_not_the_clients() -> None:
    assert [c for c in (200, 400, 413, 422, 429, 499, 500, 503) if failed(c)] == [429, 500, 503]


def test_the_buckets_are_fine_enough_for_the_latency_bar() -> None:
    ratios = [b / a for a, b in itertools.pairwise(LATENCY_BUCKETS)]
    assert max(ratios) < 1.251 and LATENCY_BUCKETS[-1] > 300


@pytest.mark.parametrize(
    ("uri", "name"),
    [
        ("models:/gemma2-text-to-sql@champion", "champion"),
        ("models:/gemma2-text-to-sql@challenger", "challenger"),
        ("models:/gemma2-text-to-sql/3", "v3"),
        ("runs:/abc/model", "default"),
    ],
)
def test_the_served_model_is_named_in_the_metrics_by_its_alias(uri, name) -> None:
    assert adapter_name(uri) == name


def test_a_recorded_challenger_is_served_beside_the_champion_by_the_servers_own_flags(
    tmp_path,
) -> None:
    """Stage 05's container (the local process and the gke Deployment alike) passes the
    challenger to `tunekit.serve`, whose own parser reads it back; a new challenger changes
    the version the container records, so the server restarts on it."""
    import tunekit
    from tunekit.backends import containers
    from tunekit.serve import parse_args

    run = tunekit.start_run(tmp_path / "r", challenger_share=0.25)
    plain = containers.serve(run, "models:/m@champion", "3", "http://mlflow")
    rollout = containers.serve(run, "models:/m@champion", "3", "http://mlflow", challenger="4")
    dirs = {containers.WORKSPACE: str(tmp_path)}
    argv = rollout.process(dirs, lambda *_: None).argv
    args, _ = parse_args([a.replace("{port}", "8000") for a in argv[3:]])
    name = run.settings.registered_model_name
    assert (args.challenger_uri, args.challenger_share) == (f"models:/{name}/4", 0.25)
    assert "--challenger-uri" not in plain.args
    assert (plain.env["TUNEKIT_SERVED_VERSION"], rollout.env["TUNEKIT_SERVED_VERSION"]) == (
        "3", "3+4",
    )  # fmt: skip
    with pytest.raises(tunekit.SettingsError, match="challenger_share"):
        tunekit.start_run(tmp_path / "bad", challenger_share=1.5)


def test_06_draws_champion_and_challenger_side_by_side() -> None:
    from tunekit import plots

    numbers = decide(CHAMPION, Live(250, 0, 1.2, 0.55)).numbers
    record = {"numbers": numbers, "reasons": ["p95 latency 1.200 s"], "verdict": "rolled back",
              "challenger_version": 4}  # fmt: skip
    fig = plots.rollout(record)
    heights = [[bar.get_height() for bar in ax.patches] for ax in fig.axes]
    assert heights == [[2000, 250], [0.60, 0.55], [1.00, 1.2], [0.001, 0.0]]
    assert "version 4 rolled back: p95 latency" in fig._suptitle.get_text()


def test_the_validation_set_is_asked_of_both_adapters_row_by_row_alternating() -> None:
    from tunekit.eval_sets import validation_rows
    from tunekit.promotion import validation_accuracy

    rows, asked = validation_rows(4), []

    def ask(row: dict, adapter: str) -> str:
        asked.append((rows.index(row), adapter))
        return row["answer"] if adapter == "champion" else "SELECT 1"

    assert validation_accuracy(ask, rows, workers=1) == {"champion": 1.0, "challenger": 0.0}
    first = [adapter for _, adapter in asked[::2]]
    assert first == ["challenger", "champion", "challenger", "champion"]  # alternating
    assert [i for i, _ in asked] == [0, 0, 1, 1, 2, 2, 3, 3]  # row by row


def test_a_version_uri_resolves_to_its_version_without_a_registry_call() -> None:
    """The container names the challenger by version (`models:/NAME/VERSION`: the alias a
    concluded rollout deletes must not be what a restarted pod loads); the server reports that
    version in /readyz, which `tunekit rollout` checks before it measures."""
    from tunekit.traffic import resolve

    assert resolve("models:/gemma2-text-to-sql/7") == ("models:/gemma2-text-to-sql/7", "7")
    assert resolve("runs:/abc/model") == ("runs:/abc/model", "")

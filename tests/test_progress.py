"""Live feedback: a bar where a person watches a notebook, plain lines everywhere else."""

from __future__ import annotations

import pytest

from tunekit import progress
from tunekit.progress import TrainingProgress

LINES = [
    "tunekit: training",
    "step 5/20  loss 6.1000  lr 1.90e-03  9,800 tokens/s",
    "step 10/20  loss 5.0000  lr 1.20e-03",
]


def test_outside_a_notebook_frontend_is_not_interactive(monkeypatch):
    assert not progress.interactive()  # pytest: no Jupyter kernel
    monkeypatch.setenv(progress.HEADLESS_ENV, "1")
    assert not progress.interactive()


def test_headless_progress_is_the_lines_themselves(capsys, monkeypatch):
    monkeypatch.setenv(progress.HEADLESS_ENV, "1")
    tracker = TrainingProgress("fine-tune")
    for line in LINES:
        tracker.line(line)
    tracker.close()
    assert capsys.readouterr().out.splitlines() == LINES
    assert tracker.bar is None


def test_interactive_progress_is_a_bar_with_loss_and_rate(capsys, monkeypatch):
    monkeypatch.setattr(progress, "interactive", lambda: True)
    tracker = TrainingProgress("fine-tune ft-1")
    for line in LINES:
        tracker.line(line)
    bar = tracker.bar
    assert (bar.n, bar.total, bar.desc) == (10, 20, "fine-tune ft-1")
    assert bar.postfix == "loss 5.0000 lr 1.20e-03"
    tracker.close()
    out = capsys.readouterr()
    assert "tunekit: training" in out.out  # not a step: shown as it is
    assert "step 5/20" not in out.out  # steps went into the bar


@pytest.mark.parametrize("interactive", [False, True])
def test_service_start_up_status_only_where_someone_watches(capsys, monkeypatch, interactive):
    monkeypatch.setattr(progress, "interactive", lambda: interactive)
    progress.waiting("mlflow", 3.0, "http://127.0.0.1:5000/health")
    progress.started("mlflow", 4.2, "http://127.0.0.1:5000/health")
    out = capsys.readouterr().out
    assert ("mlflow is up at http://127.0.0.1:5000/health (4.2 s)" in out) is interactive
    assert ("waiting for mlflow" in out) is interactive

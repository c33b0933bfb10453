"""Take the README's MLflow screenshots (docs/images/) from a run of `make demo`: its default
fine-tune, in MLflow's model-training view, read from the run's own tracking data.

    make demo
    .venv/bin/python tools/readme_screenshots.py            # the latest run under runs/
    .venv/bin/python tools/readme_screenshots.py --run-dir runs/<id>

It reopens the run's MLflow (as `tunekit ui` does), drives Debian's Chromium with Playwright,
logged in as the run's admin, and stops what it started. The browser test takes the same
pictures of its short test fine-tune into test-artifacts/browser/.
"""

from __future__ import annotations

import argparse
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
# Chromium as the browser test starts it: no background connections on a closed network
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run-dir", default="", help="default: the latest run under runs/")
    parser.add_argument("--output", type=Path, default=REPO / "docs" / "images")
    args = parser.parse_args()

    from playwright.sync_api import sync_playwright

    import tunekit
    from tunekit.backends import backend_for
    from tunekit.credentials import ADMIN
    from tunekit.local_services import stop_all

    run = tunekit.open_run(args.run_dir)
    state = run.state.read()
    finetune, registry = state.get("finetune", {}), state.get("registry", {})
    if not finetune.get("mlflow_run_id") or not registry.get("registered_model_name"):
        raise SystemExit(f"run {run.id} has no fine-tune or champion: run `make demo` first")
    backend = backend_for(run)
    info = backend.open_ui(run)
    admin = backend.read_secret(run, ADMIN)
    tracking = run.state.section("mlflow")["tracking_uri"]
    experiment = finetune["experiment_id"]
    args.output.mkdir(parents=True, exist_ok=True)
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            page = browser.new_context(
                viewport={"width": 1400, "height": 900},
                http_credentials={"username": admin["username"], "password": admin["password"]},
            ).new_page()
            page.goto(f"{tracking}/#/experiments/{experiment}")
            page.get_by_text("Model training", exact=True).first.wait_for(timeout=60_000)
            model_training_view(page)  # the switch is kept for the session's later pages
            page.goto(f"{tracking}/#/experiments/{experiment}/runs/{finetune['mlflow_run_id']}")
            page.get_by_text("validation_tuned_execution_accuracy").first.wait_for(timeout=60_000)
            page.get_by_role("tab", name="Model metrics").click()
            page.get_by_placeholder("Search metric charts").fill("loss")  # loss, eval_loss
            page.wait_for_timeout(4_000)  # the charts draw from the run's metric history
            page.screenshot(path=args.output / "mlflow-run-metrics.png")
            page.goto(f"{tracking}/#/models/{registry['registered_model_name']}")
            page.get_by_text("@ champion").first.wait_for(timeout=60_000)
            page.screenshot(path=args.output / "mlflow-model.png")
            browser.close()
    finally:
        if info.get("started"):
            stop_all(run)
    print(f"screenshots of run {run.id} -> {args.output}")


def model_training_view(page: object) -> None:
    """MLflow 3's "Model training" side of its GenAI / Model training switch (it leaves the
    page for the runs list), and its assistant's panel closed: the view of a fine-tune."""
    switch = page.get_by_text("Model training", exact=True)  # type: ignore[attr-defined]
    if switch.count():
        switch.first.click()
    close = page.locator("[aria-label='Close']")  # type: ignore[attr-defined]
    if close.count():
        close.first.click()
    page.wait_for_timeout(1_000)  # type: ignore[attr-defined]


if __name__ == "__main__":
    main()

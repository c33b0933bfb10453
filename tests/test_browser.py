"""The walkthrough the way a person uses it: JupyterLab in a real browser, then the MLflow UI.

Chromium from Debian's `chromium` package (`.ci/run` installs it), driven by Playwright. The
notebooks (copies, so the committed ones stay without outputs) run cell by cell in a real
JupyterLab on 127.0.0.1 with a token; the fine-tune is the tests' tiny one, set through the
environment the kernels inherit. Screenshots land in test-artifacts/browser/.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import nbformat
import pytest
import requests
from playwright.sync_api import Error as PlaywrightError

from tunekit.credentials import ADMIN, LocalSecrets
from tunekit.local_services import free_port, running_services, stop_all
from tunekit.run import recorded_run

from .conftest import REPO, TINY_FINETUNE

sys.path.insert(0, str(REPO / "tools"))
import sync_notebooks

pytestmark = [pytest.mark.e2e, pytest.mark.browser]
CHROMIUM = Path("/usr/bin/chromium")
SHOTS = REPO / "test-artifacts" / "browser"
# the tests' tiny fine-tune, as the TUNEKIT_<NAME> variables the kernels inherit
TINY = {
    f"TUNEKIT_{name.upper()}": value
    for name, value in (p.split("=", 1) for p in TINY_FINETUNE if p != "-p")
}
CELL_TIMEOUT_S = 300


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    """JupyterLab on a free port of 127.0.0.1 with a token, serving copies of the notebooks."""
    if not CHROMIUM.is_file():
        pytest.fail(f"{CHROMIUM} is missing: `apt-get install chromium` (.ci/run does)")
    work = tmp_path_factory.mktemp("lab")
    shutil.copytree(REPO / "notebooks", work / "notebooks")
    token, port = secrets.token_hex(16), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TUNEKIT_", "JUPYTER"))}
    env.update(TINY, TUNEKIT_MODELS_DIR=os.environ["TUNEKIT_MODELS_DIR"])
    settings = work / "lab-settings" / "@jupyterlab"
    (settings / "apputils-extension").mkdir(parents=True)
    (settings / "apputils-extension" / "notification.jupyterlab-settings").write_text(
        '{"fetchNews": "false"}'
    )
    # every cell in the page at once: JupyterLab's default windowing ('defer') attaches the
    # cells out of view only in idle CPU time (schemas/@jupyterlab/notebook-extension/
    # tracker.json `windowingMode`), so on a busy machine the last code cell in the page was
    # not the notebook's, and the edit of 07 went into its install cell
    (settings / "notebook-extension").mkdir()
    (settings / "notebook-extension" / "tracker.jupyterlab-settings").write_text(
        '{"windowingMode": "none"}'
    )
    env.update(TUNEKIT_RUNS_DIR=str(work / "runs"), HF_HUB_OFFLINE="1",
               JUPYTERLAB_SETTINGS_DIR=str(work / "lab-settings"),
               JUPYTER_CONFIG_DIR=str(work / "config"), JUPYTER_DATA_DIR=str(work / "data"),
               JUPYTER_RUNTIME_DIR=str(work / "runtime"))  # fmt: skip
    log = (work / "jupyterlab.log").open("w")
    server = subprocess.Popen(
        [sys.executable, "-m", "jupyter", "lab", "--no-browser", "--ServerApp.ip=127.0.0.1",
         f"--ServerApp.port={port}", f"--IdentityProvider.token={token}",
         f"--ServerApp.root_dir={work / 'notebooks'}", "--LabApp.news_url=None",
         "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
         "--LabApp.extension_manager=readonly", "--allow-root"],
        env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and server.poll() is None:
        try:
            if requests.get(f"{url}/api/status", params={"token": token}, timeout=2).ok:
                break
        except requests.RequestException:
            time.sleep(0.5)
    else:
        server.terminate()
        pytest.fail(f"JupyterLab did not start: {(work / 'jupyterlab.log').read_text()[-2000:]}")
    yield {"url": url, "token": token, "work": work}
    server.terminate()
    server.wait(30)
    for run_dir in (work / "runs").glob("*/"):
        stop_all(recorded_run(run_dir))


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        yield chromium
        chromium.close()


def _run_notebook(page, lab: dict, name: str, edit: str = "") -> nbformat.NotebookNode:
    """Open `name` from the file browser, wait for its kernel, (type `edit` at the end of its
    last code cell,) Run > Run All Cells, wait for the last cell, File > Save Notebook; the
    saved notebook."""
    if "/lab" not in page.url:
        page.goto(f"{lab['url']}/lab?token={lab['token']}")
    page.locator(f'.jp-DirListing-item:has-text("{name}.ipynb")').dblclick()
    page.locator(f'.lm-TabBar-tab.lm-mod-current:has-text("{name}.ipynb")').wait_for()
    page.locator(f"{_FRONT} .jp-Cell").first.wait_for(timeout=60_000)
    page.wait_for_function(_KERNEL_IDLE, timeout=60_000)
    page.locator("#jp-main-statusbar").get_by_text(re.compile(r"\|\s*Idle")).wait_for(
        timeout=60_000
    )
    if edit:  # as a person edits: click into the cell, go to its end, type
        page.locator(f"{_FRONT} .jp-CodeCell .cm-content").last.click()
        page.keyboard.press("Control+End")
        page.keyboard.type(edit)
    page.get_by_role("menuitem", name="Run", exact=True).click()
    page.get_by_role("menuitem", name="Run All Cells", exact=True).click()
    page.wait_for_function(_STARTED, timeout=60_000, polling=100)
    try:
        page.wait_for_function(_ALL_RUN, timeout=CELL_TIMEOUT_S * 1000, polling=500)
    except Exception:
        page.screenshot(path=SHOTS / f"timeout-{name}.png")
        prompts = page.evaluate(_PROMPTS)
        pytest.fail(f"{name}: cells not done after {CELL_TIMEOUT_S} s; prompts {prompts}")
    page.get_by_role("menuitem", name="File", exact=True).click()
    page.locator('.lm-Menu-itemLabel:text-is("Save Notebook")').click()
    page.wait_for_function(_SAVED, timeout=30_000)
    return nbformat.read(lab["work"] / "notebooks" / f"{name}.ipynb", as_version=4)


# The notebook panel in front, read through the page's DOM (what a person sees).
_FRONT = ".jp-MainAreaWidget:not(.lm-mod-hidden)"
_KERNEL_IDLE = """() => {
  const status = document.querySelector(
    '.jp-MainAreaWidget:not(.lm-mod-hidden) .jp-Notebook-ExecutionIndicator');
  return status && status.getAttribute('data-status') === 'idle';
}"""
_STARTED = """() => [...document.querySelectorAll('.jp-MainAreaWidget:not(.lm-mod-hidden)'
  + ' .jp-CodeCell .jp-InputArea-prompt')].some(p => p.textContent.trim() === '[*]:')"""
# Done: nothing queued or running any more (an error stops Run All: the rest stay unrun).
_ALL_RUN = "() => !(" + _STARTED + ")() && (" + _KERNEL_IDLE + ")()"
_PROMPTS = """() => [...document.querySelectorAll('.jp-MainAreaWidget:not(.lm-mod-hidden)'
  + ' .jp-CodeCell .jp-InputArea-prompt')].map(p => p.textContent)"""
_SAVED = """() => !document.querySelector('.lm-TabBar-tab.lm-mod-current.jp-mod-dirty')"""


def _errors(book: nbformat.NotebookNode) -> list[str]:
    return [
        f"{o.ename}: {o.evalue}"
        for c in book.cells
        if c.cell_type == "code"
        for o in c.outputs
        if o.output_type == "error"
    ]


def _text(book: nbformat.NotebookNode) -> str:
    parts = []
    for c in book.cells:
        for o in c.get("outputs", []):
            parts.append(o.get("text", "") or o.get("data", {}).get("text/plain", ""))
    return "\n".join(parts)


def test_the_series_in_jupyterlab_and_the_result_in_the_mlflow_ui(lab, browser):
    page = browser.new_page(viewport={"width": 1280, "height": 860})
    books = {}
    for name in ("01-cluster", "02-mlflow", "03-finetune", "04-registry", "05-deploy-simple",
                 "06-deploy-kserve"):  # fmt: skip
        books[name] = book = _run_notebook(page, lab, name)
        assert _errors(book) == [], name
        assert all(c.execution_count for c in book.cells if c.cell_type == "code"), name
        if name == "03-finetune":
            page.locator(".jp-RenderedImage img").first.scroll_into_view_if_needed()
            page.screenshot(path=SHOTS / "jupyterlab-03-finetune.png")
        if name == "05-deploy-simple":
            page.locator("text=SQL:").first.scroll_into_view_if_needed()
            page.screenshot(path=SHOTS / "jupyterlab-05-deploy-simple.png")

    # what the notebooks show: the plots, a live progress bar, the tuned model's answer
    images = [o for c in books["03-finetune"].cells for o in c.get("outputs", [])
              if "image/png" in o.get("data", {})]  # fmt: skip
    assert len(images) >= 2  # training curves, base vs tuned
    widgets = [o for c in books["03-finetune"].cells for o in c.get("outputs", [])
               if "application/vnd.jupyter.widget-view+json" in o.get("data", {})]  # fmt: skip
    assert widgets, "no progress bar (tqdm.auto) in 03"
    recipe = _text(books["03-finetune"])  # the configs it ran, and the prompt template
    assert "peft_config = LoraConfig(" in recipe and "args = SFTConfig(" in recipe
    assert "Question: {question}" in recipe
    answer = _text(books["05-deploy-simple"])
    assert "SQL:" in answer and "(model version 1)" in answer
    assert "V2 endpoint:" in _text(books["06-deploy-kserve"])

    # the MLflow UI: a login first (basic auth, as on the cluster), then the experiment's
    # fine-tune run with its metrics, and the champion alias
    run = recorded_run(next((lab["work"] / "runs").glob("*/")))
    state = run.state.read()
    tracking, finetune = state["mlflow"]["tracking_uri"], state["finetune"]
    # without a login the server asks for one (a headless browser cannot answer the prompt:
    # Chromium ends the navigation with ERR_INVALID_AUTH_CREDENTIALS)
    with pytest.raises(PlaywrightError, match="ERR_INVALID_AUTH_CREDENTIALS"):
        page.goto(tracking)
    assert page.request.get(tracking).status == 401
    admin = LocalSecrets(run.dir).get(ADMIN)
    ui = browser.new_context(
        viewport={"width": 1280, "height": 860},
        http_credentials={"username": admin["username"], "password": admin["password"]},
    )
    page.close()
    page = ui.new_page()
    page.goto(f"{tracking}/#/experiments/{finetune['experiment_id']}/runs/"
              f"{finetune['mlflow_run_id']}")  # fmt: skip
    page.get_by_text("tuned_execution_accuracy").first.wait_for(timeout=60_000)
    page.screenshot(path=SHOTS / "mlflow-run.png")
    page.get_by_role("tab", name="Model metrics").click()
    page.wait_for_timeout(3_000)  # the charts draw from the run's metric history
    page.screenshot(path=SHOTS / "mlflow-run-metrics.png")
    model = state["registry"]["registered_model_name"]
    page.goto(f"{tracking}/#/models/{model}")
    page.get_by_text("@ champion").first.wait_for(timeout=60_000)
    page.screenshot(path=SHOTS / "mlflow-model.png")

    # 07, edited in JupyterLab: saving writes the notebook and its .py pair (jupytext), and
    # `make notebooks` leaves the pair in sync and the notebook without outputs
    page = browser.new_page(viewport={"width": 1280, "height": 860})
    edit = "\nprint('edited in JupyterLab')"
    cleanup = _run_notebook(page, lab, "07-cleanup", edit=edit)
    assert _errors(cleanup) == []
    last = [c for c in cleanup.cells if c.cell_type == "code"][-1]
    assert last.source.endswith(edit.strip()), "the edit did not go into the last code cell"
    assert "edited in JupyterLab" in _text(cleanup)
    assert running_services(run) == {}
    notebook = lab["work"] / "notebooks" / "07-cleanup.ipynb"
    assert "print('edited in JupyterLab')" in notebook.with_suffix(".py").read_text()
    synced = subprocess.run([sys.executable, str(REPO / "tools" / "sync_notebooks.py"),
                             str(notebook)], capture_output=True, text=True)  # fmt: skip
    assert synced.returncode == 0, synced.stderr
    assert sync_notebooks.differences(notebook) == []
    clean = nbformat.read(notebook, as_version=4)
    assert not [c for c in clean.cells if c.cell_type == "code" and c.outputs]
    assert "print('edited in JupyterLab')" in clean.cells[-1].source
    page.close()
    ui.close()

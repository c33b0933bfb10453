"""Write an example of what the gke profile applies: `python tools/render_manifests.py manifests`.

The objects are rendered by `tunekit.backends.gke.workloads` during a gke dry run (here with project
`my-project` and the default settings); this copy in manifests/ is for reading and reviewing
them. A test checks it is current: after changing the workloads, re-run this script.
"""

from __future__ import annotations

import contextlib
import io
import shutil
import sys
import tempfile
from pathlib import Path

import tunekit
from tunekit.provenance import git_commit, git_dirty

EXAMPLE = {"profile": "gke", "dry_run": True, "project_id": "my-project"}
STAGES = (tunekit.create_cluster, tunekit.start_mlflow, tunekit.finetune,
          lambda run: tunekit.sweep(run, tunekit.Sweep(run.settings)),  # the default search
          tunekit.register_model, tunekit.deploy_simple, tunekit.deploy_kserve)  # fmt: skip
REPO = Path(__file__).resolve().parents[1]
ROLLOUT = "rollout"  # the servers' objects during a rollout, in manifests/rollout/


def render(out: Path) -> list[Path]:
    """Render the example into `out` (manifests, Helm values, the command list)."""
    with tempfile.TemporaryDirectory() as tmp:
        run = tunekit.start_run(Path(tmp) / "example", **EXAMPLE)
        with contextlib.redirect_stdout(io.StringIO()):
            for stage in STAGES:
                stage(run)
        gke = run.dir / "gke"
        written = []
        for path in [
            *sorted((gke / "manifests").glob("*.yaml")),
            gke / "helm" / "mlflow-values.yaml",
            gke / "katib" / "katib-config-change.yaml",
        ]:
            written.append(Path(shutil.copy(path, out / path.name)))
        commands = (gke / "commands.sh").read_text()
        commands = commands.replace(str(run.dir), "runs/example").replace(str(REPO), ".")
        commands = commands.replace(f"_GIT_COMMIT={git_commit()}", "_GIT_COMMIT=<commit>")
        commands = commands.replace(f"_GIT_DIRTY={git_dirty()}", "_GIT_DIRTY=<dirty>")
        lines = [line for line in commands.splitlines() if not line.startswith("# --- ")]
        (out / "commands.sh").write_text("\n".join(lines) + "\n")
        written.append(out / "commands.sh")
        # during a rollout (stage 04 registered version 2 as the challenger), 05 and 06 again:
        # both adapters in one server, MLServer's KServe canary weighed by its Gateway
        run.state.update("registry", {"challenger_version": 2})
        (out / ROLLOUT).mkdir(exist_ok=True)
        with contextlib.redirect_stdout(io.StringIO()):
            for stage in (tunekit.deploy_simple, tunekit.deploy_kserve):
                stage(run)
        for name in ("05-serve.yaml", "06-kserve.yaml", "06-gateway.yaml"):
            written.append(Path(shutil.copy(gke / "manifests" / name, out / ROLLOUT / name)))
    return written


if __name__ == "__main__":
    target = Path(sys.argv[1] if len(sys.argv) > 1 else "manifests")
    for path in render(target):
        print(path)

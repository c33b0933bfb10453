"""The kit's images, built and pushed by Cloud Build (stage 02, once per `image_tag`)."""

from __future__ import annotations

import shlex

from tunekit import project_files
from tunekit.backends.gke import workloads
from tunekit.backends.gke.shell import Shell
from tunekit.backends.gke.terraform import planned_outputs
from tunekit.run import Run


def build_images(sh: Shell, run: Run) -> None:
    """Cloud Build builds and pushes the kit's images tagged `image_tag` (once per tag)."""
    from tunekit.provenance import git_commit, git_dirty

    s = run.settings
    probe = workloads.image(run, "finetune")
    describe = ["gcloud", "artifacts", "docker", "images", "describe", probe,
                f"--project={s.project_id}"]  # fmt: skip
    # recorded so that a replay of commands.sh goes on to the build when it fails
    shown = f"{shlex.join(describe)} || true  # built already? then the build is skipped"
    done = sh.run(describe, shown=shown, capture=True, check=False)
    if done and done.returncode == 0:
        print(f"images {s.image_tag} are built already")
        return
    planned = planned_outputs(run)
    account = run.state.section("cluster").get(
        "build_service_account", planned["build_service_account"]
    )
    context = project_files.build_context(sh.folder / "build-context")
    sh.run(
        [
            "gcloud",
            "builds",
            "submit",
            str(context),
            f"--config={context / 'cloudbuild.yaml'}",
            f"--project={s.project_id}",
            f"--region={s.region}",
            f"--service-account=projects/{s.project_id}/serviceAccounts/{account}",
            f"--gcs-source-staging-dir=gs://{s.bucket}/cloudbuild/source",
            f"--substitutions=_REGISTRY={planned['registry']},_TAG={s.image_tag},"
            f"_GIT_COMMIT={git_commit()},_GIT_DIRTY={git_dirty()}",
        ]
    )

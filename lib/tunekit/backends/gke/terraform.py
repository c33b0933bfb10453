"""terraform/ as stage 01 drives it: the variables the kit sets, and the outputs it reads."""

from __future__ import annotations

from typing import Any

from tunekit.backends.gke import workloads
from tunekit.run import Run


def terraform_variables(run: Run) -> dict[str, Any]:
    """The variables tunekit sets in terraform/ (each must be declared in variables.tf)."""
    s = run.settings
    return {
        "project_id": s.project_id,
        "region": s.region,
        "cluster_name": s.cluster_name,
        "bucket": s.bucket,
        "namespace": s.namespace,
        "gpu_type": s.gpu_type,
        "gpu_count": s.gpu_count,
        "gpu_machine_type": s.gpu_machine_type,
        "gpu_spot": s.gpu_spot,
        "gpu_node_locations": s.gpu_zones,
        "num_nodes": s.num_nodes,
        # a GPU node per server pod: FastAPI and vLLM up to serve_max_replicas each (their
        # HPAs), MLServer and its canary during a rollout
        "gpu_max_nodes": 2 * s.serve_max_replicas + 2,
        # the Gateway's proxies: the NetworkPolicy that admits them names the same range
        "proxy_only_cidr": workloads.PROXY_ONLY_CIDR,
    }


def planned_outputs(run: Run) -> dict[str, Any]:
    """What `terraform output -json` gives, known from the variables."""
    s = run.settings
    return {
        "cluster_name": s.cluster_name,
        "location": s.region,
        "bucket": s.bucket,
        "registry": workloads.registry(run),
        "build_service_account": f"{s.cluster_name}-build@{s.project_id}.iam.gserviceaccount.com",
    }

#!/usr/bin/env bash
# The gke profile's workloads on a local kind cluster, with the tiny model: for people with
# Docker. Not run on the machine tunekit is developed on (it has no Docker engine); GitHub
# Actions runs it (.github/workflows/kind-e2e.yml).
#
# What it exercises: the images (docker/), the rendered manifests of a gke dry run (the same
# objects stage 01-06 apply on GKE), the MLflow chart with its values, the fine-tune Job on a
# node that advertises a fake `nvidia.com/gpu`, the FastAPI Deployment answering a question.
# What kind cannot give, and is swapped here: Cloud Storage (the Job's /workspace is an emptyDir
# and MLflow keeps artifacts on a volume) and real GPUs (the tiny model trains on CPU).
#
#   ci/kind-e2e.sh            # create the cluster, run, leave it up for inspection
#   KEEP=0 ci/kind-e2e.sh     # delete the cluster at the end
set -euo pipefail
cd "$(dirname "$0")/.."
CLUSTER=${KIND_CLUSTER:-tunekit}
NS=tunekit
KEEP=${KEEP:-1}
PY=${PYTHON:-.venv/bin/python}
for tool in docker kind kubectl helm; do
  command -v "$tool" >/dev/null || { echo "kind-e2e: $tool is required" >&2; exit 2; }
done
docker info >/dev/null 2>&1 || { echo "kind-e2e: no Docker engine is reachable" >&2; exit 2; }
TAG=$("$PY" -c 'import tunekit; print(tunekit.__version__)')
RUN_DIR=runs/kind-$(date -u +%Y%m%d-%H%M%S)
cleanup() { [[ "$KEEP" == 0 ]] && kind delete cluster --name "$CLUSTER" || true; }
trap cleanup EXIT

echo "== cluster"
kind get clusters | grep -qx "$CLUSTER" || kind create cluster --name "$CLUSTER" --wait 120s
NODE=$(kubectl get nodes -o jsonpath='{.items[0].metadata.name}')
# A fake GPU: the scheduler sees one nvidia.com/gpu and the GKE node labels the Job selects.
kubectl patch node "$NODE" --subresource=status --type=json \
  -p '[{"op":"add","path":"/status/capacity/nvidia.com~1gpu","value":"1"}]'
kubectl label node "$NODE" --overwrite cloud.google.com/gke-accelerator=nvidia-l4 \
  cloud.google.com/gke-spot=true

echo "== images (CPU torch wheels; the GKE images use PyPI's CUDA build)"
cpu=(--build-arg CUDA_BASE=ubuntu:24.04 --build-arg TORCH_INDEX=https://download.pytorch.org/whl/cpu)
docker build -f docker/finetune/Dockerfile "${cpu[@]}" -t "tunekit/finetune:$TAG" .
docker build -f docker/serve/Dockerfile --build-arg "BASE_IMAGE=tunekit/finetune:$TAG" \
  -t "tunekit/serve:$TAG" .
docker build -f docker/mlflow/Dockerfile -t "tunekit/mlflow:$TAG" .
for image in finetune serve mlflow; do
  kind load docker-image "tunekit/$image:$TAG" --name "$CLUSTER"
done

echo "== render: a gke dry run of stages 01-05 with the tiny model"
HF_HUB_OFFLINE=1 "$PY" -m tunekit run --profile gke --run-dir "$RUN_DIR" --stages 01-05 \
  -p dry_run=true -p project_id=kind-e2e -p model_id=tiny-gemma2 -p dataset=synthetic \
  -p max_steps=30 -p save_steps=10 -p synthetic_rows=600 -p eval_size=20 \
  -p gpu_spot=true
# For kind: the images loaded above, a volume for the bucket, no GCS for MLflow, one fake GPU
# for the containers that ask for one (ci/kind_manifests.py; its rules are tested in make test).
"$PY" ci/kind_manifests.py "$RUN_DIR" "$TAG"

echo "== namespace, secrets, PostgreSQL, MLflow"
kubectl apply -f "$RUN_DIR/kind/01-namespace.yaml"
for secret in mlflow-db:mlflow mlflow-auth:admin mlflow-reader:reader; do
  kubectl -n "$NS" create secret generic "${secret%%:*}" --from-literal="username=${secret##*:}" \
    --from-literal="password=$(openssl rand -hex 16)" --dry-run=client -o yaml | kubectl apply -f -
done
kubectl apply -f "$RUN_DIR/kind/02-postgres.yaml"
kubectl -n "$NS" rollout status statefulset/postgres --timeout=5m
CHART=$("$PY" -c 'from tunekit.backends import mlflow_chart as c; print(c.NAME, c.VERSION, c.REPOSITORY)')
read -r CHART_NAME CHART_VERSION CHART_REPOSITORY <<<"$CHART"
helm repo add community-charts "$CHART_REPOSITORY" --force-update
helm upgrade --install mlflow "$CHART_NAME" --version "$CHART_VERSION" -n "$NS" \
  -f "$RUN_DIR/kind/mlflow-values.yaml" --wait --timeout 10m

echo "== the fine-tune Job (tiny model, fake GPU)"
kubectl apply -f "$RUN_DIR/kind/03-finetune-job.yaml"
JOB=$(kubectl -n "$NS" get jobs -o jsonpath='{.items[0].metadata.name}')
kubectl -n "$NS" logs -f "job/$JOB" -c train --pod-running-timeout=10m || true
# Complete or Failed, whichever comes first (kubectl wait takes one condition)
for _ in $(seq 180); do
  state=$(kubectl -n "$NS" get "job/$JOB" -o jsonpath='{.status.conditions[?(@.status=="True")].type}')
  [[ "$state" == *Complete* ]] && break
  [[ "$state" == *Failed* ]] && { echo "kind-e2e: Job $JOB failed" >&2; exit 1; }
  sleep 10
done
[[ "$state" == *Complete* ]] || { echo "kind-e2e: Job $JOB did not finish" >&2; exit 1; }

echo "== the reader user and the champion through a port-forward, then the FastAPI Deployment"
kubectl -n "$NS" port-forward svc/mlflow 15000:5000 >/dev/null 2>&1 &
FORWARD=$!
trap 'kill $FORWARD 2>/dev/null; cleanup' EXIT
sleep 3
# The stages' own code, with the kind cluster as the live one: logins come from its Secrets.
"$PY" - "$RUN_DIR" <<'PYEOF'
import sys, tunekit
from tunekit.backends.gke import Gke
run = tunekit.open_run(sys.argv[1])
uri = "http://127.0.0.1:15000"
with run.state.edit() as data:
    data["settings"]["dry_run"] = False
    data["mlflow"]["tracking_uri"] = uri
run = tunekit.open_run(sys.argv[1])
experiment = Gke().mlflow_objects(run, uri)  # the experiment and the reader, as stage 02
run.state.update("mlflow", {"experiment_id": experiment})
print(tunekit.register_model(run))
PYEOF
kubectl apply -f "$RUN_DIR/kind/05-serve.yaml"
kubectl -n "$NS" rollout status deployment/tunekit-serve --timeout=15m
kubectl -n "$NS" port-forward svc/tunekit-serve 18080:80 >/dev/null 2>&1 &
sleep 3
curl -sf "http://127.0.0.1:18080/predict?message=How%20many%20rows%20are%20in%20table_1%3F" | tee /dev/stderr | grep -q sql
echo "kind-e2e: the Job trained and registered the model; the Deployment answered"

#!/usr/bin/env bash
# The gke profile's commands for run example, in the order they ran.
set -euo pipefail

terraform -chdir=./terraform init -input=false
terraform -chdir=./terraform apply -input=false -auto-approve -var-file=runs/example/gke/terraform.tfvars.json
terraform -chdir=./terraform output -json
gcloud container clusters get-credentials tunekit --region=us-central1 --project=my-project --dns-endpoint
# kubectl get nodes -l=cloud.google.com/gke-accelerator=nvidia-l4 (the API)
kubectl apply --server-side --field-manager=tunekit -f runs/example/gke/manifests/01-namespace.yaml

gcloud artifacts docker images describe us-central1-docker.pkg.dev/my-project/tunekit/finetune:0.1.0 --project=my-project || true  # built already? then the build is skipped
gcloud builds submit . --config=./cloudbuild.yaml --project=my-project --region=us-central1 --service-account=projects/my-project/serviceAccounts/tunekit-build@my-project.iam.gserviceaccount.com --gcs-source-staging-dir=gs://my-project-tunekit/cloudbuild/source --substitutions=_REGISTRY=us-central1-docker.pkg.dev/my-project/tunekit,_TAG=0.1.0,_GIT_COMMIT=<commit>,_GIT_DIRTY=<dirty>
# Secret mlflow-db applied server-side with its values (redacted copy: runs/example/gke/manifests/02-secret-mlflow-db.yaml)
# Secret mlflow-auth applied server-side with its values (redacted copy: runs/example/gke/manifests/02-secret-mlflow-auth.yaml)
# Secret mlflow-reader applied server-side with its values (redacted copy: runs/example/gke/manifests/02-secret-mlflow-reader.yaml)
kubectl apply --server-side --field-manager=tunekit -f runs/example/gke/manifests/02-postgres.yaml
kubectl rollout status statefulset/postgres -n=tunekit --timeout=10m
kubectl exec -i -n=tunekit statefulset/postgres -c postgres -- sh -c 'psql -v ON_ERROR_STOP=1 -U "$POSTGRES_USER" -d postgres' <<'SQL'
SELECT 'CREATE DATABASE "mlflow_auth"' WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = 'mlflow_auth')\gexec
SQL
helm repo add community-charts https://community-charts.github.io/helm-charts --force-update
helm upgrade --install mlflow community-charts/mlflow --version=1.11.5 --namespace=tunekit --values=runs/example/gke/helm/mlflow-values.yaml --wait --timeout=15m

# Secret hf-token applied server-side with its values (redacted copy: runs/example/gke/manifests/03-secret-hf-token.yaml)
kubectl apply --server-side --field-manager=tunekit -f runs/example/gke/manifests/03-finetune-job.yaml
# kubectl logs -f job/ft-57d079b170-1 -c train -n=tunekit, then the Job's condition Complete or Failed (followed through the API)
gcloud storage cat gs://my-project-tunekit/tunekit/example/finetune/ft-57d079b170/result.json

# Secret hf-token applied server-side with its values (redacted copy: runs/example/gke/manifests/03-secret-hf-token.yaml)
kubectl apply --server-side --field-manager=tunekit -k 'github.com/kubeflow/katib.git/manifests/v1beta1/installs/katib-standalone?ref=v0.19.0'
kubectl wait deployment --all -n=kubeflow --for=condition=Available --timeout=10m
# ConfigMap kubeflow/katib-config: katib-config.yaml read, changed as runs/example/gke/katib/katib-config-change.yaml shows, applied server-side
kubectl apply --server-side --field-manager=tunekit -f runs/example/gke/manifests/03-sweep-experiment.yaml
# kubectl get experiment/sw-71129e8e37 -n=tunekit -w, until its condition Succeeded or Failed (followed through the API)

kubectl apply -f https://raw.githubusercontent.com/GoogleCloudPlatform/k8s-stackdriver/af49d863755c0535f598cfde9288ae9a75251d38/custom-metrics-stackdriver-adapter/deploy/production/adapter_new_resource_model.yaml
kubectl wait deployment --all -n=custom-metrics --for=condition=Available --timeout=5m
kubectl apply --server-side --field-manager=tunekit -f runs/example/gke/manifests/05-serve.yaml
kubectl rollout status deployment/tunekit-serve -n=tunekit --timeout=20m

kubectl apply -f https://github.com/cert-manager/cert-manager/releases/download/v1.17.2/cert-manager.yaml
kubectl wait deployment --all -n=cert-manager --for=condition=Available --timeout=5m
kubectl apply --server-side --field-manager=tunekit -f runs/example/gke/addons/kserve-namespace.yaml
kubectl apply --server-side --field-manager=tunekit --force-conflicts -f https://github.com/kserve/kserve/releases/download/v0.21.0/kserve.yaml
kubectl wait deployment/kserve-controller-manager -n=kserve --for=condition=Available --timeout=10m
kubectl wait deployment/llmisvc-controller-manager -n=kserve --for=condition=Available --timeout=10m
kubectl apply --server-side --field-manager=tunekit --force-conflicts -f https://github.com/kserve/kserve/releases/download/v0.21.0/kserve-cluster-resources.yaml
kubectl patch configmap/inferenceservice-config -n=kserve --type=merge '-p={"data": {"deploy": "{\"defaultDeploymentMode\": \"Standard\"}"}}'
kubectl apply -f https://raw.githubusercontent.com/GoogleCloudPlatform/k8s-stackdriver/af49d863755c0535f598cfde9288ae9a75251d38/custom-metrics-stackdriver-adapter/deploy/production/adapter_new_resource_model.yaml
kubectl wait deployment --all -n=custom-metrics --for=condition=Available --timeout=5m
kubectl apply --server-side --field-manager=tunekit -f runs/example/gke/manifests/06-gateway.yaml
kubectl apply --server-side --field-manager=tunekit -f runs/example/gke/manifests/06-kserve.yaml
kubectl wait --for=create deployment/gemma2-text-to-sql-predictor -n=tunekit --timeout=10m
kubectl wait deployment/gemma2-text-to-sql-predictor -n=tunekit '--for=jsonpath={.metadata.annotations.internal\.serving\.kserve\.io/storage-initializer-sourceuri}=gs://my-project-tunekit/mlflow/dry-run/gemma2-text-to-sql' --timeout=10m
kubectl rollout status deployment/gemma2-text-to-sql-predictor -n=tunekit --timeout=30m
kubectl wait --for=create deployment/gemma2-text-to-sql-vllm-predictor -n=tunekit --timeout=10m
kubectl rollout status deployment/gemma2-text-to-sql-vllm-predictor -n=tunekit --timeout=30m
kubectl wait gateway/tunekit-serving -n=tunekit --for=condition=Programmed --timeout=15m
kubectl get gateway/tunekit-serving -n=tunekit '-o=jsonpath={.status.addresses[0].value}'

# Every grant the tutorial made by hand, as Workload Identity Federation principals of the
# Kubernetes service accounts tunekit uses in var.namespace (no Google service-account keys).

locals {
  # The project number from the bucket (created after the APIs are on; a data source would be
  # read before them on a fresh project). The pool is the cluster's (it exists once a Workload
  # Identity cluster does): referencing it orders the grants after the cluster.
  principal = "principal://iam.googleapis.com/projects/${google_storage_bucket.artifacts.project_number}/locations/global/workloadIdentityPools/${google_container_cluster.tunekit.workload_identity_config[0].workload_pool}/subject/ns/${var.namespace}/sa"
  bucket_roles = {
    mlflow        = "roles/storage.objectUser"   # the tracking server reads and writes artifacts
    tunekit-train = "roles/storage.objectUser"   # the Job's checkpoints (Cloud Storage FUSE)
    tunekit-serve = "roles/storage.objectViewer" # KServe's storage initializer downloads models
  }
  node_roles = [
    "roles/logging.logWriter",
    "roles/monitoring.metricWriter",
    "roles/monitoring.viewer",
    "roles/stackdriver.resourceMetadata.writer",
  ]
}

resource "google_storage_bucket_iam_member" "workloads" {
  for_each = local.bucket_roles
  bucket   = google_storage_bucket.artifacts.name
  role     = each.value
  member   = "${local.principal}/${each.key}"
}

# Nodes: a minimal service account that writes logs and metrics and pulls the kit's images.
resource "google_service_account" "nodes" {
  depends_on   = [google_project_service.apis] # the IAM API, on a fresh project
  project      = var.project_id
  account_id   = "${var.cluster_name}-nodes"
  display_name = "tunekit GKE nodes"
}

resource "google_project_iam_member" "nodes" {
  for_each = toset(local.node_roles)
  project  = var.project_id
  role     = each.value
  member   = "serviceAccount:${google_service_account.nodes.email}"
}

resource "google_artifact_registry_repository_iam_member" "nodes_pull" {
  project    = var.project_id
  location   = var.region
  repository = google_artifact_registry_repository.images.name
  role       = "roles/artifactregistry.reader"
  member     = "serviceAccount:${google_service_account.nodes.email}"
}

# Cloud Build: builds and pushes the images; its source is staged in the artifact bucket.
resource "google_service_account" "build" {
  depends_on   = [google_project_service.apis] # the IAM API, on a fresh project
  project      = var.project_id
  account_id   = "${var.cluster_name}-build"
  display_name = "tunekit image builds"
}

resource "google_artifact_registry_repository_iam_member" "build_push" {
  project    = var.project_id
  location   = var.region
  repository = google_artifact_registry_repository.images.name
  role       = "roles/artifactregistry.writer"
  member     = "serviceAccount:${google_service_account.build.email}"
}

resource "google_storage_bucket_iam_member" "build_source" {
  bucket = google_storage_bucket.artifacts.name
  role   = "roles/storage.objectViewer"
  member = "serviceAccount:${google_service_account.build.email}"
}

resource "google_project_iam_member" "build_logs" {
  project = var.project_id
  role    = "roles/logging.logWriter"
  member  = "serviceAccount:${google_service_account.build.email}"
}

# The Custom Metrics Stackdriver Adapter reads the servers' queue (Managed Prometheus) from
# Cloud Monitoring for their HPAs (tunekit.backends.gke.workloads.autoscaling): its
# Kubernetes service account, custom-metrics/custom-metrics-stackdriver-adapter, as a
# Workload Identity principal (GKE's "Optimize Pod autoscaling based on metrics" grant).
resource "google_project_iam_member" "metrics_adapter" {
  project = var.project_id
  role    = "roles/monitoring.viewer"
  member  = "principal://iam.googleapis.com/projects/${google_storage_bucket.artifacts.project_number}/locations/global/workloadIdentityPools/${google_container_cluster.tunekit.workload_identity_config[0].workload_pool}/subject/ns/custom-metrics/sa/custom-metrics-stackdriver-adapter"
}

# The artifact bucket (MLflow artifacts, fine-tune checkpoints) and the image repository.

resource "google_storage_bucket" "artifacts" {
  #checkov:skip=CKV_GCP_62:access logs of the artifact bucket would be written into another bucket that tunekit does not own; use Cloud Audit Logs
  name                        = var.bucket
  project                     = var.project_id
  location                    = var.region
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = var.bucket_force_destroy
  labels                      = local.labels

  versioning {
    enabled = true
  }

  # Old checkpoint and artifact versions go after 30 days.
  lifecycle_rule {
    condition {
      days_since_noncurrent_time = 30
    }
    action {
      type = "Delete"
    }
  }

  depends_on = [google_project_service.apis]
}

resource "google_artifact_registry_repository" "images" {
  #checkov:skip=CKV_GCP_84:Google-managed encryption; a customer-managed key needs a KMS key ring tunekit does not create
  project       = var.project_id
  location      = var.region
  repository_id = "tunekit"
  format        = "DOCKER"
  description   = "tunekit images: finetune, serve, mlserver, mlflow"
  labels        = local.labels

  depends_on = [google_project_service.apis]
}

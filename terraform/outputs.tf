# Read by stage 01 (`terraform output -json`).

output "cluster_name" {
  value = google_container_cluster.tunekit.name
}

output "location" {
  value = google_container_cluster.tunekit.location
}

output "bucket" {
  value = google_storage_bucket.artifacts.name
}

output "registry" {
  description = "Where Cloud Build pushes the images: <region>-docker.pkg.dev/<project>/tunekit"
  value       = "${var.region}-docker.pkg.dev/${var.project_id}/${google_artifact_registry_repository.images.repository_id}"
}

output "build_service_account" {
  value = google_service_account.build.email
}

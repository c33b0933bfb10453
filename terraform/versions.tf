terraform {
  required_version = ">= 1.5"
  required_providers {
    google = {
      source  = "hashicorp/google"
      version = "~> 6.40"
    }
  }
  # State is local by default. For a team, keep it in a bucket:
  # backend "gcs" { bucket = "<state-bucket>", prefix = "tunekit" }
}

provider "google" {
  project = var.project_id
  region  = var.region
}

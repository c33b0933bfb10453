# A GKE Standard cluster for tunekit: a CPU pool for MLflow and PostgreSQL, a GPU pool that
# scales from zero for the fine-tune Job and the model servers, Workload Identity, the Cloud
# Storage FUSE driver (the Job's checkpoints live in the bucket), private nodes behind Cloud NAT.

locals {
  apis = ["cloudresourcemanager", "compute", "container", "artifactregistry", "cloudbuild", "iam", "storage"]
  # Admission webhooks the control plane calls on the nodes, beyond the tcp:443 and tcp:10250
  # that GKE's own firewall rule for private clusters allows: KServe's webhook server listens
  # on 9443 (kserve cmd/manager/main.go `webhookPort: 9443`), Katib's on 8443 (katib v0.19.0
  # manifests/v1beta1/components/controller/service.yaml). cert-manager's listens on 10250.
  webhook_ports = ["8443", "9443"]
  labels = {
    part-of = "tunekit"
  }
}

resource "google_project_service" "apis" {
  for_each           = toset(local.apis)
  project            = var.project_id
  service            = "${each.value}.googleapis.com"
  disable_on_destroy = false
}

resource "google_compute_network" "tunekit" {
  name                    = var.cluster_name
  project                 = var.project_id
  auto_create_subnetworks = false
  depends_on              = [google_project_service.apis]
}

resource "google_compute_subnetwork" "tunekit" {
  #checkov:skip=CKV_GCP_26:VPC flow logs cost money and tunekit's traffic is in-cluster; enable them for audits
  name                     = var.cluster_name
  project                  = var.project_id
  region                   = var.region
  network                  = google_compute_network.tunekit.id
  ip_cidr_range            = "10.10.0.0/20"
  private_ip_google_access = true

  secondary_ip_range {
    range_name    = "pods"
    ip_cidr_range = "10.20.0.0/14"
  }
  secondary_ip_range {
    range_name    = "services"
    ip_cidr_range = "10.30.0.0/20"
  }
}

# The proxies of the internal Gateway (GatewayClass gke-l7-rilb) that weighs MLServer's
# champion against its canary: a regional internal Application Load Balancer needs a
# proxy-only subnet in the region, one active per network and region (load-balancing docs,
# proxy-only-subnets). The provider sends no log_config for this purpose (flow logs are not
# supported on it: resource_compute_subnetwork.go expandComputeSubnetworkLogConfig).
resource "google_compute_subnetwork" "proxy_only" {
  #checkov:skip=CKV_GCP_26:a proxy-only subnet cannot have flow logs
  #checkov:skip=CKV_GCP_74:a proxy-only subnet holds the load balancer's proxies, not VMs that reach Google APIs
  name          = "${var.cluster_name}-proxy-only"
  project       = var.project_id
  region        = var.region
  network       = google_compute_network.tunekit.id
  ip_cidr_range = var.proxy_only_cidr
  purpose       = "REGIONAL_MANAGED_PROXY"
  role          = "ACTIVE"
}

# Ingress: only the cluster's own ranges (nodes, pods, services), the Gateway's proxies and
# Google's health checks.
resource "google_compute_firewall" "internal" {
  name      = "${var.cluster_name}-internal"
  project   = var.project_id
  network   = google_compute_network.tunekit.id
  direction = "INGRESS"
  source_ranges = [
    "10.10.0.0/20", "10.20.0.0/14", "10.30.0.0/20", var.proxy_only_cidr, "35.191.0.0/16", "130.211.0.0/22"
  ]

  allow {
    protocol = "tcp"
  }
  allow {
    protocol = "udp"
  }
  allow {
    protocol = "icmp"
  }
}

# The control plane (private cluster, VPC peering) reaches admission webhooks on the nodes.
resource "google_compute_firewall" "control_plane_webhooks" {
  name          = "${var.cluster_name}-control-plane-webhooks"
  project       = var.project_id
  network       = google_compute_network.tunekit.id
  direction     = "INGRESS"
  source_ranges = [var.master_ipv4_cidr_block]

  allow {
    protocol = "tcp"
    ports    = local.webhook_ports
  }
}

# Private nodes reach Docker Hub, the Hugging Face Hub and PyPI through Cloud NAT.
resource "google_compute_router" "tunekit" {
  name    = var.cluster_name
  project = var.project_id
  region  = var.region
  network = google_compute_network.tunekit.id
}

resource "google_compute_router_nat" "tunekit" {
  name                               = var.cluster_name
  project                            = var.project_id
  region                             = var.region
  router                             = google_compute_router.tunekit.name
  nat_ip_allocate_option             = "AUTO_ONLY"
  source_subnetwork_ip_ranges_to_nat = "ALL_SUBNETWORKS_ALL_IP_RANGES"
}

resource "google_container_cluster" "tunekit" {
  #checkov:skip=CKV_GCP_66:Binary Authorization needs an attestation pipeline; images come from the project's own Artifact Registry, built by Cloud Build
  #checkov:skip=CKV_GCP_65:Google Groups for RBAC needs a Workspace domain; access is by IAM
  #checkov:skip=CKV_GCP_21:labels are set (resource_labels); the check looks for an older attribute
  #checkov:skip=CKV_GCP_69:node pools set GKE_METADATA; the default pool is removed at creation
  #checkov:skip=CKV_GCP_12:Dataplane V2 (ADVANCED_DATAPATH) enforces network policies; the network_policy block is for the legacy Calico add-on and conflicts with it
  name     = var.cluster_name
  project  = var.project_id
  location = var.region

  # Node pools are managed below; the default pool is removed at creation. Until then it runs
  # as the nodes' service account, not the Compute Engine default one (which may be disabled,
  # or hold Editor). The provider recreates the cluster when node_config changes after
  # creation (terraform-provider-google#12070): it is ignored once the pool is gone.
  remove_default_node_pool = true
  initial_node_count       = 1
  node_config {
    service_account = google_service_account.nodes.email
    oauth_scopes    = ["https://www.googleapis.com/auth/cloud-platform"]
    workload_metadata_config {
      mode = "GKE_METADATA"
    }
    shielded_instance_config {
      enable_secure_boot          = true
      enable_integrity_monitoring = true
    }
  }
  lifecycle {
    ignore_changes = [node_config]
  }
  deletion_protection = false # stage 07 destroys the cluster

  network           = google_compute_network.tunekit.id
  subnetwork        = google_compute_subnetwork.tunekit.id
  datapath_provider = "ADVANCED_DATAPATH" # Dataplane V2: network policies enforced
  resource_labels   = local.labels

  release_channel {
    channel = var.release_channel
  }

  workload_identity_config {
    workload_pool = "${var.project_id}.svc.id.goog"
  }

  # Managed Prometheus collection: the PodMonitorings of the servers' /metrics (their HPAs
  # scale on the queue, vllm:num_requests_waiting)
  monitoring_config {
    enable_components = ["SYSTEM_COMPONENTS"]
    managed_prometheus {
      enabled = true
    }
  }

  # Gateway API's standard CRDs and GKE's GatewayClasses (MLServer's Gateway, stage 06)
  gateway_api_config {
    channel = "CHANNEL_STANDARD"
  }

  addons_config {
    gcs_fuse_csi_driver_config {
      enabled = true
    }
    http_load_balancing {
      disabled = false
    }
  }

  ip_allocation_policy {
    cluster_secondary_range_name  = "pods"
    services_secondary_range_name = "services"
  }

  private_cluster_config {
    enable_private_nodes    = true
    enable_private_endpoint = false
    master_ipv4_cidr_block  = var.master_ipv4_cidr_block
  }

  # kubectl reaches the control plane through its DNS-based endpoint, authorized by IAM
  # (`gcloud container clusters get-credentials --dns-endpoint`); its IP endpoint answers only
  # the networks listed in master_authorized_networks (none by default) and the VPC.
  control_plane_endpoints_config {
    dns_endpoint_config {
      allow_external_traffic = true
    }
  }

  master_authorized_networks_config {
    # Google Cloud's public IP ranges do not reach the IP endpoint either (provider >= 4.45)
    gcp_public_cidrs_access_enabled = false
    dynamic "cidr_blocks" {
      for_each = var.master_authorized_networks
      content {
        cidr_block   = cidr_blocks.value.cidr_block
        display_name = cidr_blocks.value.display_name
      }
    }
  }

  master_auth {
    client_certificate_config {
      issue_client_certificate = false
    }
  }

  enable_shielded_nodes       = true
  enable_intranode_visibility = true
  enable_legacy_abac          = false

  database_encryption {
    state    = "DECRYPTED"
    key_name = ""
  }

  logging_service    = "logging.googleapis.com/kubernetes"
  monitoring_service = "monitoring.googleapis.com/kubernetes"

  depends_on = [google_project_service.apis]
}

resource "google_container_node_pool" "cpu" {
  name     = "cpu"
  project  = var.project_id
  location = var.region
  cluster  = google_container_cluster.tunekit.name

  initial_node_count = 1 # per zone; the autoscaler keeps one node in all
  autoscaling {
    total_min_node_count = 1
    total_max_node_count = 3
  }
  management {
    auto_repair  = true
    auto_upgrade = true
  }

  node_config {
    machine_type    = var.cpu_machine_type
    image_type      = "COS_CONTAINERD"
    service_account = google_service_account.nodes.email
    oauth_scopes    = ["https://www.googleapis.com/auth/cloud-platform"]
    labels          = local.labels

    workload_metadata_config {
      mode = "GKE_METADATA"
    }
    shielded_instance_config {
      enable_secure_boot          = true
      enable_integrity_monitoring = true
    }
  }
}

resource "google_container_node_pool" "gpu" {
  name           = "gpu"
  project        = var.project_id
  location       = var.region
  cluster        = google_container_cluster.tunekit.name
  node_locations = var.gpu_node_locations # zones that have the accelerator

  lifecycle {
    # checked when the pool is created or changed, not on destroy
    precondition {
      condition     = length(var.gpu_node_locations) > 0
      error_message = "gpu_node_locations: list zones of the region that have gpu_type (gcloud compute accelerator-types list --filter=zone~REGION); GKE's own pick ignores accelerators."
    }
  }

  initial_node_count = 0
  autoscaling {
    total_min_node_count = 0
    total_max_node_count = max(var.gpu_max_nodes, var.num_nodes + 2)
  }
  management {
    auto_repair  = true
    auto_upgrade = true
  }

  node_config {
    machine_type    = var.gpu_machine_type
    image_type      = "COS_CONTAINERD"
    spot            = var.gpu_spot
    disk_size_gb    = 200 # model weights, the Hugging Face cache, images
    disk_type       = "pd-balanced"
    service_account = google_service_account.nodes.email
    oauth_scopes    = ["https://www.googleapis.com/auth/cloud-platform"]
    labels          = local.labels

    guest_accelerator {
      type  = var.gpu_type
      count = var.gpu_count
      gpu_driver_installation_config {
        # R580, which the images' CUDA 13 needs (tunekit.gpu_stack; checked at container start)
        gpu_driver_version = "LATEST"
      }
    }

    # Only pods that tolerate the GPU taint (the Job, the servers) land here.
    taint {
      key    = "nvidia.com/gpu"
      value  = "present"
      effect = "NO_SCHEDULE"
    }

    workload_metadata_config {
      mode = "GKE_METADATA"
    }
    shielded_instance_config {
      enable_secure_boot          = true
      enable_integrity_monitoring = true
    }
  }
}

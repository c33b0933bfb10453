# Variables tunekit sets from its settings (stage 01 writes them to
# runs/<run-id>/gke/terraform.tfvars.json): project_id, region, cluster_name, bucket,
# namespace, gpu_type, gpu_count, gpu_machine_type, gpu_spot, num_nodes. The others keep their defaults
# unless you set them in a .tfvars file of your own (see example.tfvars).

variable "project_id" {
  description = "Google Cloud project that holds everything."
  type        = string
}

variable "region" {
  description = "Region of the cluster, the bucket and the Artifact Registry repository."
  type        = string
  default     = "us-central1"
}

variable "cluster_name" {
  description = "Name of the GKE Standard cluster."
  type        = string
  default     = "tunekit"
}

variable "bucket" {
  description = "GCS bucket for MLflow artifacts and fine-tune checkpoints."
  type        = string
}

variable "bucket_force_destroy" {
  description = "Let `terraform destroy` (stage 07) delete the bucket with its objects."
  type        = bool
  default     = true
}

variable "namespace" {
  description = "Kubernetes namespace of tunekit's workloads (Workload Identity principals)."
  type        = string
  default     = "tunekit"
}

variable "release_channel" {
  description = "GKE release channel."
  type        = string
  default     = "REGULAR"
}

variable "cpu_machine_type" {
  description = "Machine type of the CPU pool (MLflow, PostgreSQL, system pods)."
  type        = string
  default     = "e2-standard-4"
}

variable "gpu_type" {
  description = "Accelerator of the GPU pool: nvidia-l4 (LoRA on a 4-bit base), nvidia-tesla-a100 or nvidia-h100-80gb (bf16)."
  type        = string
  default     = "nvidia-l4"
}

variable "gpu_count" {
  description = "GPUs per GPU node."
  type        = number
  default     = 1
}

variable "gpu_machine_type" {
  description = "Machine type of the GPU pool; must carry gpu_count GPUs of gpu_type (g2 for L4, a2 for A100, a3 for H100)."
  type        = string
  default     = "g2-standard-8"
}

variable "gpu_spot" {
  description = "Spot GPU nodes: about a third of the price; the fine-tune Job resumes from its last checkpoint when a node is preempted."
  type        = bool
  default     = true
}

variable "gpu_max_nodes" {
  description = "Upper bound of the GPU pool's autoscaling (it scales to zero when idle); raised to num_nodes + 2 where that is more (the fine-tune's nodes and the two servers'). tunekit sets it for its servers: 2 x serve_max_replicas + 2 (FastAPI and vLLM scaled on their queue, MLServer and its canary)."
  type        = number
  default     = 3
}

variable "num_nodes" {
  description = "GPU nodes one fine-tune spans (tunekit's num_nodes; more than one runs a Kubeflow TrainJob): the pool scales to at least this many, each with gpu_count GPUs."
  type        = number
  default     = 1

  validation {
    condition     = var.num_nodes >= 1 && var.num_nodes == floor(var.num_nodes)
    error_message = "num_nodes must be a whole number of nodes, at least 1."
  }
}

variable "gpu_node_locations" {
  description = "Zones of the GPU pool: zones of the region that have gpu_type (GKE's own pick ignores accelerators). tunekit sets the zones it knows."
  type        = list(string)
  default     = [] # a default, so that a run's older tfvars still destroy; the pool refuses it
}

variable "master_authorized_networks" {
  description = "CIDR blocks that may reach the control plane's IP endpoint. None by default: kubectl uses the DNS-based endpoint, authorized by IAM."
  type        = list(object({ cidr_block = string, display_name = string }))
  default     = []
}

variable "master_ipv4_cidr_block" {
  description = "The control plane's /28 range (private cluster); the webhook firewall rule admits it."
  type        = string
  default     = "172.16.0.0/28"
}

variable "proxy_only_cidr" {
  description = "The range of the proxy-only subnet of MLServer's internal Gateway (at least /26)"
  type        = string
  default     = "10.40.0.0/23"
}

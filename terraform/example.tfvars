# An example of settings for `terraform apply -var-file=example.tfvars` run by hand.
# tunekit's stage 01 writes its own runs/<run-id>/gke/terraform.tfvars.json from the kit's
# settings; use a file like this one only to run terraform yourself.
project_id   = "my-project"
region       = "us-central1"
cluster_name = "tunekit"
bucket       = "my-project-tunekit"

# LoRA on gemma-2-9b with a 4-bit base: one L4 (24 GB), Spot.
gpu_type         = "nvidia-l4"
gpu_count        = 1
gpu_machine_type = "g2-standard-8"
gpu_spot         = true
# zones of the region that have gpu_type (L4: us-central1-a, -b, -c; not -f)
gpu_node_locations = ["us-central1-a", "us-central1-b", "us-central1-c"]

# bf16 on one A100 40 GB instead:
# gpu_type         = "nvidia-tesla-a100"
# gpu_machine_type = "a2-highgpu-1g"

# kubectl uses the control plane's DNS endpoint (IAM decides who may). To reach its IP
# endpoint too, from your office or VPN only:
# master_authorized_networks = [{ cidr_block = "203.0.113.0/24", display_name = "office" }]

"""The GPU images' CUDA and the GPU nodes' NVIDIA driver, as one pair, and the check that a
GPU container runs first so that a mismatch fails at start, naming both, instead of training
on the CPU (torch only warns when the driver is too old, and then sees no GPU).

The pair (each fact with its source; tests/test_gke_upstream.py checks the files agree):
- torch 2.13.0 from PyPI is a CUDA 13.0 build: its Linux wheel requires
  `cuda-toolkit[...]==13.0.3` and `nvidia-cudnn-cu13` (the wheel's Requires-Dist);
- CUDA 13.0 needs driver 580.65.06 or newer (NVIDIA's CUDA 13.0 release notes, "CUDA Toolkit
  and Minimum Required Driver Version"; minor-version compatibility holds within 13.x only
  from R580), as does KServe v0.21's huggingfaceserver GPU image (CUDA 13);
- GKE's `gpu_driver_version = "LATEST"` installs the R580 branch (rapidsai/deployment#659:
  LATEST "ensures that driver version > 580.65"); DEFAULT may be older, so the pools ask for
  LATEST (terraform/main.tf) and this check refuses anything older at start.
"""

from __future__ import annotations

import ctypes
import os
import re
from pathlib import Path

TORCH = "torch==2.13.0"
TORCH_CUDA = "13.0"
CUDA_BASE_IMAGE = "nvidia/cuda:13.0.2-cudnn-runtime-ubuntu24.04"
MIN_DRIVER = "580.65.06"
GKE_DRIVER = "LATEST"
REQUIRE_ENV = "TUNEKIT_REQUIRE_CUDA"  # set on GPU pods (tunekit.backends.gke.workloads)


class GpuMismatch(RuntimeError):
    """The container asked for a GPU and cannot use it with this driver."""


def driver_cuda() -> int | None:
    """The CUDA version the node's driver supports (libcuda's cuDriverGetVersion, e.g. 13000
    for 13.0), or None when no driver is visible in the container."""
    try:
        libcuda = ctypes.CDLL("libcuda.so.1")
    except OSError:
        return None
    version = ctypes.c_int(0)
    if libcuda.cuDriverGetVersion(ctypes.byref(version)) != 0:
        return None
    return version.value


def driver_version(proc: Path = Path("/proc/driver/nvidia/version")) -> str:
    """The kernel module's version (`NVRM version: ... Kernel Module  580.65.06 ...`)."""
    try:
        found = re.search(r"Kernel Module\s+([\d.]+)", proc.read_text())
    except OSError:
        return "unknown"
    return found.group(1) if found else "unknown"


def check(required: str, supported: int | None, driver: str) -> None:
    """Refuse a driver whose CUDA (`supported`, as cuDriverGetVersion gives it) is older than
    the `required` CUDA (major.minor) of the image's torch."""
    major, minor = (int(p) for p in required.split(".")[:2])
    wanted = f"CUDA {required} (torch {TORCH.split('==')[1]}), which needs NVIDIA driver " \
             f">= {MIN_DRIVER} (GKE: gpu_driver_version = \"{GKE_DRIVER}\")"  # fmt: skip
    if supported is None:
        raise GpuMismatch(f"no NVIDIA driver is visible in this container; the image is built "
                          f"for {wanted}")  # fmt: skip
    if supported < major * 1000 + minor * 10:
        have = f"{supported // 1000}.{supported % 1000 // 10}"
        raise GpuMismatch(f"the node's NVIDIA driver {driver} supports CUDA up to {have}; the "
                          f"image is built for {wanted}")  # fmt: skip


def require_cuda() -> None:
    """On a pod that asked for GPUs (REQUIRE_ENV set): the driver matches the image's CUDA."""
    if required := os.environ.get(REQUIRE_ENV):
        check(required, driver_cuda(), driver_version())

"""Base models: a Hub id or local directory, or `tiny-gemma2` for CPU-only machines.

`tiny-gemma2` is a `Gemma2ForCausalLM` of 0.8M parameters (4 layers, hidden 128, tied embeddings
as Gemma-2's own) with a 1000-token byte-level BPE tokenizer, shipped with the kit in
`tiny_gemma2/`. It was pretrained once (`tools/pretrain_tiny_gemma2.py`) to copy text, the
skill a real base model brings to text-to-SQL, where every answer copies names and values from
the question and the tables, to read questions with their tables, and to read SQL files in
which a comment asks and a query answers (as code on the web does). It never saw the kit's
prompt template: the base scores near 0 on the task as the kit asks it.
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
from pathlib import Path
from typing import Any

TINY = "tiny-gemma2"
# tiny-gemma2 ships with the kit, pretrained by tools/pretrain_tiny_gemma2.py
TINY_DIR = Path(__file__).parent / "tiny_gemma2"
TINY_FILES = ("config.json", "generation_config.json", "model.safetensors", "tokenizer.json",
              "tokenizer_config.json")  # fmt: skip


def places_base(model_id: str) -> bool:
    """True for the base model the fine-tune places itself (tiny-gemma2), into its workspace:
    the logged adapter names its base by path, and the servers find it there."""
    return model_id == TINY


def is_local_model(model_id: str) -> bool:
    """True when nothing of the base model comes from the Hub: tiny-gemma2 or a directory."""
    return places_base(model_id) or Path(model_id).expanduser().is_dir()


def place_tiny_gemma2(models_dir: Path) -> Path:
    """The packaged tiny-gemma2 copied into `models_dir` (once: the copy is named by a digest
    of its files, so a kit with another pretrained base places a new one); its directory."""
    digest = hashlib.sha256()
    for name in TINY_FILES:
        digest.update((TINY_DIR / name).read_bytes())
    path = Path(models_dir) / f"{TINY}-{digest.hexdigest()[:12]}"
    if (path / "config.json").is_file():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}-", dir=path.parent))
    for name in TINY_FILES:
        shutil.copyfile(TINY_DIR / name, tmp / name)
    try:
        tmp.rename(path)  # complete or absent, never half-written
    except OSError:
        if not (path / "config.json").is_file():
            raise
        shutil.rmtree(tmp, ignore_errors=True)  # another process placed it first
    return path


def load_base(
    model_id: str,
    *,
    models_dir: Path,
    load_in_4bit: bool = False,
    device: int | None = None,
    sharded: bool = False,
) -> tuple[Any, Any, str]:
    """The base model, its tokenizer, and what to call it (a Hub id or a local path).

    `device`: the GPU of this training process (QLoRA under DDP: each process places the
    4-bit base on its own GPU). `sharded`: FSDP will shard it, so 4-bit weights are stored as
    bf16 tensors FSDP can flatten (PEFT's QLoRA-with-FSDP recipe, `bnb_4bit_quant_storage`).
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    reference = model_id
    if model_id == TINY:
        reference = str(place_tiny_gemma2(models_dir))
    cuda = torch.cuda.is_available()
    kwargs: dict[str, Any] = {
        "dtype": torch.bfloat16 if cuda else torch.float32,
        # Gemma-2 soft-caps its attention logits, which SDPA does not support
        "attn_implementation": "flash_attention_2" if cuda and _has_flash_attn() else "eager",
    }
    if load_in_4bit:
        from transformers import BitsAndBytesConfig

        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=torch.bfloat16,
            **({"bnb_4bit_quant_storage": torch.bfloat16} if sharded else {}),
        )
        if device is not None and not sharded:
            kwargs["device_map"] = {"": device}
    model = AutoModelForCausalLM.from_pretrained(reference, **kwargs)
    tokenizer = AutoTokenizer.from_pretrained(reference)
    if load_in_4bit:
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(model)
    return model, tokenizer, reference


def _has_flash_attn() -> bool:
    try:
        import flash_attn  # noqa: F401
    except ImportError:
        return False
    return True

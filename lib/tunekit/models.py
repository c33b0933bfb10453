"""Base models: a Hub id or local directory, or `tiny-gemma2` built here for CPU-only machines.

`tiny-gemma2` is a `Gemma2ForCausalLM` with a tiny config and a byte-level BPE tokenizer trained on
the training text. A randomly initialised network is a poor stand-in for a pretrained base: it
cannot copy a word from its input, which every text-to-SQL answer needs. So the builder gives it a
short pretraining on a copy task (each training question or context, then the same text again),
the skill a real base model brings. It never sees an SQL answer: the base scores ~0 on the task.
"""

from __future__ import annotations

import hashlib
import json
import random
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

TINY = "tiny-gemma2"


def builds_base(model_id: str) -> bool:
    """True for the base model the fine-tune builds itself (tiny-gemma2), into its workspace."""
    return model_id == TINY


def is_local_model(model_id: str) -> bool:
    """True when nothing of the base model comes from the Hub: tiny-gemma2 or a directory."""
    return builds_base(model_id) or Path(model_id).expanduser().is_dir()


@dataclass(frozen=True)
class TinyRecipe:
    """How `tiny-gemma2` is built; part of its cache key."""

    vocab_size: int = 1000
    hidden_size: int = 128
    intermediate_size: int = 256
    num_hidden_layers: int = 3
    num_attention_heads: int = 4
    num_key_value_heads: int = 2
    max_position_embeddings: int = 512
    pretrain_steps: int = 1000
    pretrain_batch_size: int = 16
    pretrain_learning_rate: float = 1e-3


def build_tiny_gemma2(
    rows: list[dict[str, str]], models_dir: Path, seed: int, recipe: TinyRecipe = TinyRecipe()
) -> Path:
    """Build (or reuse) tiny-gemma2 for these training rows; returns its directory."""
    digest = hashlib.sha256(
        json.dumps([asdict(recipe), seed, rows], sort_keys=True).encode()
    ).hexdigest()[:12]
    path = Path(models_dir) / f"{TINY}-{digest}"
    if (path / "config.json").is_file():
        return path
    print(
        f"tunekit: building {TINY} at {path} (tokenizer, then {recipe.pretrain_steps} steps "
        "of copy pretraining; once per training data)",
        flush=True,
    )
    import torch
    from transformers import Gemma2Config, Gemma2ForCausalLM

    torch.manual_seed(seed)
    tokenizer = _train_tokenizer(
        [t for r in rows for t in (r["question"], r["context"], r["answer"])], recipe
    )
    config = Gemma2Config(
        vocab_size=len(tokenizer),
        hidden_size=recipe.hidden_size,
        intermediate_size=recipe.intermediate_size,
        num_hidden_layers=recipe.num_hidden_layers,
        num_attention_heads=recipe.num_attention_heads,
        num_key_value_heads=recipe.num_key_value_heads,
        head_dim=recipe.hidden_size // recipe.num_attention_heads,
        query_pre_attn_scalar=recipe.hidden_size // recipe.num_attention_heads,
        max_position_embeddings=recipe.max_position_embeddings,
        sliding_window=recipe.max_position_embeddings,
        tie_word_embeddings=False,  # the LoRA fine-tune trains the output head on its own
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    model = Gemma2ForCausalLM(config)
    if recipe.pretrain_steps:
        _pretrain_to_copy(model, tokenizer, rows, recipe, seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}-", dir=path.parent))
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    try:
        tmp.rename(path)  # complete or absent, never half-written
    except OSError:
        if not (path / "config.json").is_file():
            raise
        shutil.rmtree(tmp, ignore_errors=True)  # another process built it first: keep its copy
    return path


def _train_tokenizer(texts: list[str], recipe: TinyRecipe) -> Any:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE(unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.train_from_iterator(
        texts,
        trainers.BpeTrainer(
            vocab_size=recipe.vocab_size,
            special_tokens=["<pad>", "<eos>", "<bos>", "<unk>"],
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        ),
    )
    bos = tokenizer.token_to_id("<bos>")
    tokenizer.post_processor = processors.TemplateProcessing(
        single="<bos> $A", pair="<bos> $A $B", special_tokens=[("<bos>", bos)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token="<bos>",
        eos_token="<eos>",
        pad_token="<pad>",
        unk_token="<unk>",
    )


def _pretrain_to_copy(
    model: Any, tokenizer: Any, rows: list[dict[str, str]], recipe: TinyRecipe, seed: int
) -> None:
    """Language-model pretraining on 'text, newline, the same text': no SQL answer in sight."""
    from datasets import Dataset
    from trl import SFTTrainer

    rng = random.Random(seed)
    texts = [rng.choice((r["question"], r["context"])) for r in rows]
    dataset = Dataset.from_list([{"text": f"{t}\n{t}"} for t in texts])
    with tempfile.TemporaryDirectory(prefix="tunekit-tiny-") as scratch:
        args = _pretrain_args(scratch, recipe, seed)
        SFTTrainer(
            model=model, args=args, train_dataset=dataset, processing_class=tokenizer
        ).train()


def _pretrain_args(output_dir: str, recipe: TinyRecipe, seed: int) -> Any:
    from trl import SFTConfig

    return SFTConfig(
        output_dir=output_dir,
        max_steps=recipe.pretrain_steps,
        per_device_train_batch_size=recipe.pretrain_batch_size,
        learning_rate=recipe.pretrain_learning_rate,
        lr_scheduler_type="cosine",
        warmup_steps=0.05,
        train_sampling_strategy="group_by_length",
        save_strategy="no",
        report_to="none",
        logging_strategy="no",
        disable_tqdm=True,
        use_cpu=True,
        seed=seed,
    )


def load_base(
    model_id: str,
    *,
    rows: list[dict[str, str]],
    models_dir: Path,
    seed: int,
    load_in_4bit: bool = False,
    tiny_pretrain_steps: int = TinyRecipe.pretrain_steps,
) -> tuple[Any, Any, str]:
    """The base model, its tokenizer, and what to call it (a Hub id or a local path)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    reference = model_id
    if model_id == TINY:
        recipe = TinyRecipe(pretrain_steps=tiny_pretrain_steps)
        reference = str(build_tiny_gemma2(rows, models_dir, seed, recipe))
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
        )
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

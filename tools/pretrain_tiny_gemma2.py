"""Pretrain `tiny-gemma2`, the small Gemma-2 the local profile fine-tunes, into
`lib/tunekit/tiny_gemma2/` (committed; run this only to change it):

    .venv/bin/python tools/pretrain_tiny_gemma2.py            # about 15 minutes on two cores

A pretrained base model brings one skill every text-to-SQL answer needs: copying a name or a
value from its input. A randomly initialised network learns that only after induction heads
form (Olsson et al., 2022, "In-context Learning and Induction Heads"), which takes far more
steps than a fine-tune on two cores has. So the kit ships a base that has it, pretrained once
on three kinds of copies, none of them an SQL answer (the base scores ~0 on the task):

- random token sequences hidden in random tokens, then copied after a newline: the only way
  to predict the copy is to find the sequence by its content, for every token of the vocabulary;
- a question or a CREATE TABLE statement of the synthetic generator, then the same text again;
- such a text, then some of its words in another order: a word is found by its first piece
  and copied to its end.

The tokenizer is a byte-level BPE trained on the generator's questions, contexts and answers
(another seed than the fine-tune's data), with words never merged with the space, underscore
or quote beside them: `ram` is the same tokens in "ram gb", "ram_gb" and "(ram_gb".
"""

from __future__ import annotations

import argparse
import json
import random
import re
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from tunekit.models import TINY_DIR

WORD = re.compile(r"[A-Za-z0-9_]+")


@dataclass(frozen=True)
class PretrainConfig:
    """The base's size and its pretraining."""

    vocab_size: int = 1000
    hidden_size: int = 128
    intermediate_size: int = 256
    num_hidden_layers: int = 3
    num_attention_heads: int = 4
    num_key_value_heads: int = 2
    max_position_embeddings: int = 512
    steps: int = 5000
    batch_size: int = 32
    learning_rate: float = 1e-3
    warmup_steps: int = 200
    mix: tuple[float, float, float] = (0.5, 0.25, 0.25)  # random, text again, words of the text
    rows: int = 30_000  # generator rows the copies come from
    data_seed: int = 1000  # not the fine-tune's (42): the base has not seen its rows
    seed: int = 0


def train_tokenizer(texts: list[str], vocab_size: int) -> Any:
    """A byte-level BPE over `texts` whose tokens never cross a non-alphanumeric character."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE(unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex("[^A-Za-z0-9]"), behavior="isolated"),
            pre_tokenizers.Digits(individual_digits=True),  # numbers are copied digit by digit
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.train_from_iterator(
        texts,
        trainers.BpeTrainer(
            vocab_size=vocab_size,
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


class Copies:
    """Pretraining examples: `input_ids` and `labels` (-100 where nothing is to be learned)."""

    def __init__(self, tokenizer: Any, texts: list[str], config: PretrainConfig):
        self.tokenizer, self.texts, self.config = tokenizer, texts, config
        self.rng = random.Random(config.seed)
        self.newline = self.encode("\n")
        self.first = len(tokenizer.all_special_ids)  # the first ordinary token

    def encode(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def example(self) -> dict[str, list[int]]:
        kind = self.rng.choices((self.hidden, self.again, self.words), weights=self.config.mix)[0]
        prompt, copy, learn_prompt = kind()
        ids = [self.tokenizer.bos_token_id, *prompt, *self.newline, *copy]
        start = 1 if learn_prompt else len(ids) - len(copy)
        return {"input_ids": ids, "labels": [-100] * start + ids[start:]}

    def random_tokens(self, n: int) -> list[int]:
        return [self.rng.randrange(self.first, len(self.tokenizer)) for _ in range(n)]

    def hidden(self) -> tuple[list[int], list[int], bool]:
        """Random tokens, a random sequence among them, and that sequence again."""
        sequence = self.random_tokens(self.rng.randint(3, 30))
        before, after = (
            self.random_tokens(self.rng.randint(0, 30)),
            self.random_tokens(self.rng.randint(0, 30)),
        )
        return [*before, *sequence, *after], sequence, False

    def again(self) -> tuple[list[int], list[int], bool]:
        """A text and the same text (the language of the text is learned too)."""
        text = self.encode(self.rng.choice(self.texts))
        return text, text, True

    def words(self) -> tuple[list[int], list[int], bool]:
        """A text and two to six of its words in another order."""
        text = self.rng.choice(self.texts)
        words = WORD.findall(text)
        chosen = self.rng.sample(words, min(len(words), self.rng.randint(2, 6)))
        return self.encode(text), self.encode(" ".join(chosen)), False


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", type=Path, default=TINY_DIR)
    parser.add_argument("--steps", type=int, default=PretrainConfig.steps)
    args = parser.parse_args()
    config = PretrainConfig(steps=args.steps)

    import torch
    from datasets import Dataset
    from transformers import (
        DataCollatorForSeq2Seq,
        Gemma2Config,
        Gemma2ForCausalLM,
        Trainer,
        TrainingArguments,
    )

    from tunekit.synthetic import generate

    started = time.monotonic()
    torch.manual_seed(config.seed)
    rows = generate(config.rows, seed=config.data_seed)
    tokenizer = train_tokenizer(
        [t for r in rows[: config.rows // 2] for t in (r["question"], r["context"], r["answer"])],
        config.vocab_size,
    )
    head_dim = config.hidden_size // config.num_attention_heads
    model = Gemma2ForCausalLM(
        Gemma2Config(
            vocab_size=len(tokenizer),
            hidden_size=config.hidden_size,
            intermediate_size=config.intermediate_size,
            num_hidden_layers=config.num_hidden_layers,
            num_attention_heads=config.num_attention_heads,
            num_key_value_heads=config.num_key_value_heads,
            head_dim=head_dim,
            query_pre_attn_scalar=head_dim,
            max_position_embeddings=config.max_position_embeddings,
            sliding_window=config.max_position_embeddings,
            tie_word_embeddings=True,  # as Gemma-2's: a copied token is scored by its embedding
            attn_implementation="eager",  # Gemma-2 soft-caps attention logits: no SDPA
            pad_token_id=tokenizer.pad_token_id,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
        )
    )
    copies = Copies(tokenizer, [t for r in rows for t in (r["question"], r["context"])], config)
    dataset = Dataset.from_list([copies.example() for _ in range(config.steps * config.batch_size)])
    scratch = Path(args.output).parent / f".{Path(args.output).name}-training"
    trainer = Trainer(
        model=model,
        args=TrainingArguments(
            output_dir=str(scratch),
            max_steps=config.steps,
            per_device_train_batch_size=config.batch_size,
            learning_rate=config.learning_rate,
            lr_scheduler_type="constant_with_warmup",
            warmup_steps=config.warmup_steps,
            weight_decay=0.0,
            logging_steps=100,
            save_strategy="no",
            report_to="none",
            use_cpu=True,
            seed=config.seed,
            disable_tqdm=True,
        ),
        train_dataset=dataset,
        data_collator=DataCollatorForSeq2Seq(tokenizer, label_pad_token_id=-100),
    )
    trainer.train()
    model.save_pretrained(args.output)
    tokenizer.save_pretrained(args.output)
    recipe = {**asdict(config), "minutes": round((time.monotonic() - started) / 60, 1)}
    (Path(args.output) / "pretraining.json").write_text(json.dumps(recipe, indent=2) + "\n")
    print(f"tiny-gemma2 -> {args.output} ({recipe['minutes']} min)")


if __name__ == "__main__":
    main()

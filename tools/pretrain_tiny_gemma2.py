"""Pretrain `tiny-gemma2`, the small Gemma-2 the local profile fine-tunes, into
`lib/tunekit/tiny_gemma2/` (committed; run this only to change it):

    .venv/bin/python tools/pretrain_tiny_gemma2.py            # about 25 minutes on two cores
    .venv/bin/python tools/pretrain_tiny_gemma2.py --stable DIR  # the decay phase only (5 min)

A pretrained base model brings one skill every text-to-SQL answer needs: copying a name or a
value from its input. A randomly initialised network learns that only after induction heads
form (Olsson et al., 2022, "In-context Learning and Induction Heads"), which takes far more
steps than a fine-tune on two cores has. So the kit ships a base that has it, pretrained once
on copies:

- random token sequences hidden in random tokens, then copied after a newline: the only way
  to predict the copy is to find the sequence by its content, for every token of the vocabulary;
- a question or a CREATE TABLE statement of the synthetic generator, then the same text again;
- such a text, then some of its words in another order: a word is found by its first piece
  and copied to its end.

and on the language a text-to-SQL model reads, as a base model that read the web and code does:

- questions with the tables they are about (a question, then its CREATE TABLE statements: which
  words go with which columns), without the query;
- CREATE TABLE statements followed by a query over them (SQL written over the given tables),
  without the question; and queries alone.

The schedule is warm-up, stable, decay: `steps` at a constant learning rate (the copy skill
appears after about 2800 of them), then `decay_steps` with the rate decaying to zero. No example
pairs a question with its query, so the base never learns the task (it scores ~0 on it); the
fine-tune teaches which query a question asks for and to copy the names into it, and needs far
fewer steps than on a base that has not read questions and SQL (README, "The local recipe").

The tokenizer is a byte-level BPE trained on the generator's questions, contexts and answers
(another seed than the fine-tune's data), with words never merged with the space, underscore
or quote beside them: `ram` is the same tokens in "ram gb", "ram_gb" and "(ram_gb".
"""

from __future__ import annotations

import argparse
import json
import random
import re
import shutil
import time
from dataclasses import asdict, dataclass, replace
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
    num_hidden_layers: int = 4
    num_attention_heads: int = 4
    num_key_value_heads: int = 2
    max_position_embeddings: int = 512
    steps: int = 6000  # at a constant learning rate (after warm-up): copying is learned
    batch_size: int = 32
    learning_rate: float = 1e-3
    warmup_steps: int = 200
    # random copies, text again, words, SQL alone, question and tables, tables and SQL
    mix: tuple[float, ...] = (0.35, 0.1, 0.1, 0.05, 0.2, 0.2, 0.0)
    decay_steps: int = 2000  # then the learning rate decays to 0
    decay_mix: tuple[float, ...] = (0.2, 0.1, 0.1, 0.05, 0.275, 0.275, 0.0)
    # then SQL files (a question as a comment, the tables, the query), from its own rows
    task_steps: int = 3000
    task_mix: tuple[float, ...] = (0.1, 0.05, 0.05, 0.0, 0.1, 0.1, 0.6)
    task_rows: int = 60_000
    task_seed: int = 1001
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

    def __init__(
        self,
        tokenizer: Any,
        texts: list[str],
        queries: list[tuple[str, str, str]],
        mix: tuple[float, ...],
        seed: int,
    ):
        self.tokenizer, self.texts, self.queries, self.mix = tokenizer, texts, queries, mix
        self.rng = random.Random(seed)
        self.newline = self.encode("\n")
        self.first = len(tokenizer.all_special_ids)  # the first ordinary token

    def encode(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def example(self) -> dict[str, list[int]]:
        kinds = (self.hidden, self.again, self.words, self.sql, self.asked, self.written,
                 self.commented)  # fmt: skip
        kind = self.rng.choices(kinds, self.mix)[0]
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

    def sql(self) -> tuple[list[int], list[int], bool]:
        """An SQL query alone, as a language model reads code: the base knows SQL's grammar
        (as Gemma does) but has never seen a question answered by a query."""
        return self.encode(self.rng.choice(self.queries)[2]), [], True

    def asked(self) -> tuple[list[int], list[int], bool]:
        """A question, then the tables it is about: which words go with which columns."""
        question, context, _ = self.rng.choice(self.queries)
        return self.encode(question), self.encode(context), True

    def commented(self) -> tuple[list[int], list[int], bool]:
        """A SQL file: a comment that asks, the tables, the query that answers (the way code on
        the web pairs them: not the kit's prompt template, which the fine-tune teaches)."""
        question, context, answer = self.rng.choice(self.queries)
        return self.encode(f"-- {question}\n{context};"), self.encode(f"{answer};"), True

    def written(self) -> tuple[list[int], list[int], bool]:
        """Tables, then a query over them: SQL that names the given tables and columns."""
        _, context, answer = self.rng.choice(self.queries)
        return self.encode(context), self.encode(answer), True


def texts_of(row: dict[str, str]) -> tuple[str, str]:
    """The texts of a generator row the copies are made of: its question and its context."""
    return row["question"], row["context"]


def pretrain(
    model: Any, tokenizer: Any, copies: Copies, steps: int, scratch: Path, **schedule: Any
):
    """`steps` of `copies` in batches of the config's size, under `schedule` (TrainingArguments)."""
    from datasets import Dataset
    from transformers import DataCollatorForSeq2Seq, Trainer, TrainingArguments

    config = PretrainConfig()
    dataset = Dataset.from_list([copies.example() for _ in range(steps * config.batch_size)])
    Trainer(
        model=model,
        args=TrainingArguments(
            output_dir=str(scratch),
            max_steps=steps,
            per_device_train_batch_size=config.batch_size,
            learning_rate=config.learning_rate,
            weight_decay=0.0,
            logging_steps=100,
            save_strategy="no",
            report_to="none",
            use_cpu=True,
            seed=config.seed,
            disable_tqdm=True,
            **schedule,
        ),
        train_dataset=dataset,
        data_collator=DataCollatorForSeq2Seq(tokenizer, label_pad_token_id=-100),
    ).train()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", type=Path, default=TINY_DIR)
    parser.add_argument("--steps", type=int, help="constant-rate steps (default: the config's)")
    parser.add_argument("--decay-steps", type=int, help="decay steps (default: the config's)")
    parser.add_argument("--task-steps", type=int, help="SQL-file steps (default: the config's)")
    parser.add_argument(
        "--stable",
        type=Path,
        help="a base this tool wrote after its constant-rate phase (pretraining.json without "
        "decay_steps): only the later phases are run on it",
    )
    parser.add_argument(
        "--decayed",
        type=Path,
        help="a base this tool wrote after its decay phase (pretraining.json without "
        "task_steps): only the SQL-file phase is run on it",
    )
    parser.add_argument(
        "--more",
        type=Path,
        help="a complete base this tool wrote: `--task-steps` more SQL-file steps on it, from "
        "rows of a seed of their own (the generator as it is now), recorded as `more_task_steps`",
    )
    args = parser.parse_args()
    if args.more:
        continue_task_phase(args.more, args.output, args.task_steps or PretrainConfig.task_steps)
        return
    config = PretrainConfig()
    for name in ("steps", "decay_steps", "task_steps"):
        if getattr(args, name) is not None:
            config = replace(config, **{name: getattr(args, name)})

    import torch
    from transformers import AutoTokenizer, Gemma2ForCausalLM

    from tunekit.synthetic import generate

    started = time.monotonic()
    torch.manual_seed(config.seed)
    scratch = Path(args.output).parent / f".{Path(args.output).name}-training"
    earlier = args.decayed or args.stable
    if earlier:
        done = json.loads((earlier / "pretraining.json").read_text())
        phase = "decay_steps" if args.stable else "task_steps"
        if phase in done or (args.decayed and "decay_steps" not in done):
            raise SystemExit(f"{earlier}: not a base of this tool's earlier phases")
        tokenizer = AutoTokenizer.from_pretrained(earlier)
        model = Gemma2ForCausalLM.from_pretrained(earlier, attn_implementation="eager")
        minutes = done["minutes"]
        later = ("task_",) + (() if args.decayed else ("decay_",))
        kept = {k: v for k, v in done.items() if k in asdict(config) and not k.startswith(later)}
        config = replace(config, **kept)  # what the earlier phases were, as they recorded it
    if not args.decayed:
        rows = generate(config.rows, seed=config.data_seed)
        texts = [t for r in rows for t in texts_of(r)]
        queries = [(r["question"], r["context"], r["answer"]) for r in rows]
    if not earlier:
        tokenizer = train_tokenizer(
            [t for r in rows[: config.rows // 2] for t in (*texts_of(r), r["answer"])],
            config.vocab_size,
        )
        model = new_model(config, tokenizer)
        copies = Copies(tokenizer, texts, queries, config.mix, config.seed)
        schedule = {
            "lr_scheduler_type": "constant_with_warmup",
            "warmup_steps": config.warmup_steps,
        }
        pretrain(model, tokenizer, copies, config.steps, scratch, **schedule)
        minutes = 0.0
    if not args.decayed:
        # Warm-up, stable, decay: the decay phase anneals what the stable phase learned and
        # adds SQL text (another seed's examples, so the fine-tune's data is new to it)
        copies = Copies(tokenizer, texts, queries, config.decay_mix, config.seed + 1)
        pretrain(model, tokenizer, copies, config.decay_steps, scratch, lr_scheduler_type="linear")
    # SQL files: questions asked in comments over their tables, answered by queries (rows of
    # their own seed, in another format than the kit's prompt: the fine-tune teaches that)
    rows = generate(config.task_rows, seed=config.task_seed)
    texts = [t for r in rows for t in texts_of(r)]
    queries = [(r["question"], r["context"], r["answer"]) for r in rows]
    copies = Copies(tokenizer, texts, queries, config.task_mix, config.seed + 2)
    pretrain(model, tokenizer, copies, config.task_steps, scratch, lr_scheduler_type="linear",
             warmup_steps=100)  # fmt: skip
    model.save_pretrained(args.output)
    if earlier:  # the same tokenizer: its files as they are (a reload adds loading options)
        for name in ("tokenizer.json", "tokenizer_config.json"):
            shutil.copyfile(earlier / name, Path(args.output) / name)
    else:
        tokenizer.save_pretrained(args.output)
    minutes += (time.monotonic() - started) / 60
    recipe = {**asdict(config), "minutes": round(minutes, 1)}
    (Path(args.output) / "pretraining.json").write_text(json.dumps(recipe, indent=2) + "\n")
    print(f"tiny-gemma2 -> {args.output} ({recipe['minutes']} min)")


def continue_task_phase(base: Path, output: Path, steps: int) -> None:
    """More of the SQL-file phase on a complete base (`base`): `steps` at the config's rate,
    warmed up and decayed again, on rows of a seed no earlier phase used. The base learns the
    generator's later changes (column types, answerable rows) and more of its questions
    without any of the fine-tune's rows or the kit's prompt template."""
    import torch
    from transformers import AutoTokenizer, Gemma2ForCausalLM

    from tunekit.synthetic import generate

    started = time.monotonic()
    done = json.loads((base / "pretraining.json").read_text())
    if "task_steps" not in done:
        raise SystemExit(f"{base}: not a complete base of this tool (no task_steps recorded)")
    config = PretrainConfig()
    torch.manual_seed(config.seed + 3)
    tokenizer = AutoTokenizer.from_pretrained(base)
    model = Gemma2ForCausalLM.from_pretrained(base, attn_implementation="eager")
    seed = done["task_seed"] + 1 + len(done.get("more_task_steps", []))
    rows = generate(config.task_rows, seed=seed)
    texts = [t for r in rows for t in texts_of(r)]
    queries = [(r["question"], r["context"], r["answer"]) for r in rows]
    copies = Copies(tokenizer, texts, queries, config.task_mix, config.seed + 3)
    scratch = output.parent / f".{output.name}-training"
    pretrain(model, tokenizer, copies, steps, scratch, lr_scheduler_type="linear",
             warmup_steps=100)  # fmt: skip
    model.save_pretrained(output)
    if output.resolve() != base.resolve():
        for name in ("tokenizer.json", "tokenizer_config.json"):
            shutil.copyfile(base / name, output / name)
    recipe = {
        **done,
        "more_task_steps": [*done.get("more_task_steps", []), steps],
        "more_task_seeds": [*done.get("more_task_seeds", []), seed],
        "minutes": round(done["minutes"] + (time.monotonic() - started) / 60, 1),
    }
    (output / "pretraining.json").write_text(json.dumps(recipe, indent=2) + "\n")
    print(f"tiny-gemma2 -> {output} ({recipe['minutes']} min)")


def new_model(config: PretrainConfig, tokenizer: Any) -> Any:
    """A randomly initialised Gemma-2 of the config's size for `tokenizer`."""
    from transformers import Gemma2Config, Gemma2ForCausalLM

    head_dim = config.hidden_size // config.num_attention_heads
    return Gemma2ForCausalLM(
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


if __name__ == "__main__":
    main()

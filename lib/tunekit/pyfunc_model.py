"""The model a fine-tune logs: an MLflow pyfunc that answers prompts with the kit's generation.

It holds the LoRA adapter (artifact `peft`, with its tokenizer) and names its base (a Hub id or a
local directory, `model_config["base_model"]`); loading puts the adapter on the base. `predict`
takes prompts (a list of strings, or a DataFrame's first column: the tutorial's input) and
answers each with `tunekit.inference`, the code path of the evaluation and of the FastAPI
server: a prompt in the kit's template (`tunekit.prompts`) is answered with SQL over its own
tables (`tunekit.grammar`, unless `constrained` is off), any other text freely.

`mlflow models serve` and stage 06's MLServer load it with `mlflow.pyfunc.load_model`; the
modules it needs travel with it (`CODE`: MLflow's code_paths), so a server with torch,
transformers, peft, sqlglot and xgrammar installed needs nothing of the kit.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mlflow.pyfunc import PythonModel

from tunekit.grammar import ContextError, sql_grammar
from tunekit.prompts import build_prompt, parse_prompt

# The modules the logged model imports, shipped in its code/tunekit/ (no __init__: the serving
# environment's `tunekit` is then a namespace package of these files alone)
CODE = ("prompts.py", "grammar.py", "inference.py", "models.py", "pyfunc_model.py", "gpu_stack.py")
ENTRY = Path(__file__).with_name("pyfunc_entry.py")  # MLflow's "model from code" file
ADAPTER = "peft"  # the artifact holding the adapter and its tokenizer


class TextToSQL(PythonModel):
    """Prompts in, SQL out: the base model with the fine-tune's LoRA adapter."""

    def load_context(self, context: Any) -> None:
        config = dict(context.model_config or {})
        self.load(context.artifacts[ADAPTER], config)

    def load(self, adapter: str, config: dict[str, Any]) -> None:
        """The base named in `config` with the adapter at `adapter` (a directory). On a GPU
        pod, first: the node's driver runs the image's CUDA (tunekit.gpu_stack)."""
        from tunekit.gpu_stack import require_cuda

        require_cuda()
        from peft import PeftModel

        from tunekit.models import load_base

        base, _, _ = load_base(config["base_model"], models_dir=Path(adapter).parent)
        self.model = PeftModel.from_pretrained(base, adapter)
        self.model.eval()
        from transformers import AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(adapter)
        self.max_new_tokens = int(config.get("max_new_tokens", 96))
        self.constrained = bool(config.get("constrained", True))
        self.free_literals = bool(config.get("free_literals", False))
        self.batch_size = int(config.get("batch_size", 32))

    @property
    def positions(self) -> int | None:
        """How many tokens the model reads (prompt and answer)."""
        return getattr(self.model.config, "max_position_embeddings", None)

    def grammar(self, prompt: str) -> str | None:
        """The grammar that constrains the answer to `prompt` (None: a free answer); a prompt
        whose context is not CREATE TABLE statements raises ContextError."""
        if not self.constrained:
            return None
        parts = parse_prompt(prompt)
        if parts is None:
            return None
        return sql_grammar(*parts, free_literals=self.free_literals)

    def check(self, prompt: str) -> str:
        """Why `prompt` cannot be answered ("" when it can): its context is not tables."""
        try:
            self.grammar(prompt)
        except ContextError as e:
            return str(e)
        return ""

    @staticmethod
    def prompt(question: str, context: str) -> str:
        """The model input for a question about the tables `context` creates."""
        return build_prompt(question, context)

    def predict(self, context: Any, model_input: Any, params: dict[str, Any] | None = None):
        """The SQL for each prompt (list of strings, or a DataFrame whose first column holds
        them). A prompt whose context is not tables raises MLflow's invalid-parameter error
        naming it (`mlflow models serve` answers 400 with that message)."""
        from mlflow.exceptions import MlflowException

        from tunekit.inference import generate

        prompts = _prompts(model_input)
        grammars = []
        for i, prompt in enumerate(prompts):
            try:
                grammars.append(self.grammar(prompt))
            except ContextError as e:
                raise MlflowException.invalid_parameter_value(f"prompt {i}: {e}") from None
        return generate(
            self.model,
            self.tokenizer,
            prompts,
            max_new_tokens=self.max_new_tokens,
            batch_size=self.batch_size,
            grammars=grammars,
        )


def _prompts(model_input: Any) -> list[str]:
    if hasattr(model_input, "iloc"):  # a DataFrame: its first column
        column = model_input.iloc[:, 0] if model_input.ndim == 2 else model_input
        return [str(v) for v in column.tolist()]
    if isinstance(model_input, str):
        return [model_input]
    return [str(v) for v in model_input]

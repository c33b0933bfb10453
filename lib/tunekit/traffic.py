"""A rollout's serving: champion and challenger as two LoRA adapters of one base model in one
process, and the split that sends a share of the requests to the challenger.

PEFT names the adapter a model was loaded with `default`: the champion's. The challenger's is
loaded beside it as `challenger`. A request may name either (`adapter`); one that names none
goes to the challenger with probability `challenger_share`.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CHAMPION, CHALLENGER = "champion", "challenger"
PEFT_NAMES = {CHAMPION: "default", CHALLENGER: CHALLENGER}  # alias -> the model's adapter name


@dataclass
class Split:
    """Which adapter answers a request. `draw` gives numbers in [0, 1) (seedable for tests)."""

    challenger_share: float = 0.1
    draw: Any = field(default_factory=lambda: random.Random().random)

    def __post_init__(self) -> None:
        if not 0 <= self.challenger_share <= 1:
            raise ValueError(f"challenger_share: must be in [0, 1] (got {self.challenger_share})")

    def choose(self, asked: str | None, served: dict[str, str]) -> str:
        """The alias that answers: the one `asked` for, or by the split; ValueError naming what
        is served when `asked` is not."""
        if asked is not None:
            if asked not in served:
                raise ValueError(f"adapter: {asked!r} is not served here (serving: "
                                 f"{', '.join(sorted(served))})")  # fmt: skip
            return asked
        if CHALLENGER in served and self.draw() < self.challenger_share:
            return CHALLENGER
        return CHAMPION if CHAMPION in served else next(iter(served))


def resolve(model_uri: str) -> tuple[str, str]:
    """`models:/NAME@ALIAS` as `models:/NAME/VERSION` and VERSION (resolved once: what is
    served does not move with the alias); `models:/NAME/VERSION` as it is, with its VERSION;
    another URI as it is, with no version."""
    import mlflow

    if model_uri.startswith("models:/") and "@" in model_uri:
        name, alias = model_uri.removeprefix("models:/").split("@", 1)
        version = mlflow.MlflowClient().get_model_version_by_alias(name, alias).version
        return f"models:/{name}/{version}", str(version)
    if model_uri.startswith("models:/") and (parts := model_uri.split("/"))[-1].isdigit():
        return model_uri, parts[-1]
    return model_uri, ""


def load_challenger(model: Any, challenger_uri: str) -> str:
    """Load the logged challenger's adapter into `model` (a PeftModel with the champion's) as
    `challenger`; its registry version. Refused, naming both, if it was tuned from another base
    model (PEFT records it in each adapter's config): one base serves both adapters."""
    import mlflow
    from mlflow.models import Model
    from peft import PeftConfig

    from tunekit.pyfunc_model import ADAPTER

    uri, version = resolve(challenger_uri)
    local = Path(mlflow.artifacts.download_artifacts(artifact_uri=uri))
    adapter = (
        local / Model.load(str(local)).flavors["python_function"]["artifacts"][ADAPTER]["path"]
    )
    theirs = PeftConfig.from_pretrained(str(adapter)).base_model_name_or_path
    ours = model.peft_config[PEFT_NAMES[CHAMPION]].base_model_name_or_path
    if Path(str(theirs)).name != Path(str(ours)).name:
        raise ValueError(f"the challenger ({challenger_uri}) was tuned from {theirs!r}, the "
                         f"champion from {ours!r}: one base serves both or neither")  # fmt: skip
    model.load_adapter(str(adapter), CHALLENGER)
    model.eval()
    return version

"""The task interface: load data, choose the head, prepare features, decode predictions, score them."""
from __future__ import annotations

from ..config import TaskSpec


class Task:
    name = "base"
    peft_task_type: str | None = None
    default_metric: str = ""  # validation metric (higher is better) for early stopping
    metric_names: tuple[str, ...] = ()
    pes_weights: dict[str, float] = {}

    def __init__(self, spec: TaskSpec):
        self.spec = spec
        self.labels: list[str] = []

    @property
    def metric(self) -> str:
        m = self.spec.metric or self.default_metric
        if m not in self.metric_names:
            raise ValueError(f"task '{self.spec.name}': metric '{m}' is not one of {', '.join(self.metric_names)}")
        return m

    def load(self):  # -> (DatasetDict with train/validation/test, report dict)
        raise NotImplementedError

    def auto_class(self, family: str, config):
        raise NotImplementedError

    def config_updates(self) -> dict:
        return {}

    def head_modules(self, model) -> list[str]:
        return []

    def prepare(self, dd, tokenizer, max_length: int):
        raise NotImplementedError

    def collator(self, tokenizer):
        raise NotImplementedError

    def loss(self, outputs, batch):
        """The task loss alone, for curves and reports. The training objective is ``outputs.loss``, which
        may carry a method's regulariser (AdaLoRA adds its orthogonality penalty there)."""
        return outputs.loss

    def decode(self, outputs, batch) -> list:
        raise NotImplementedError

    def references(self, batch) -> list:
        raise NotImplementedError

    def compute_metrics(self, predictions: list, references: list) -> dict:
        raise NotImplementedError

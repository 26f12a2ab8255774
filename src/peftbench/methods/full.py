"""Full fine-tuning: every parameter trains."""
from .base import Method


class FullFineTuning(Method):
    name = "full"

    def apply(self, model, spec, ctx):
        for p in model.parameters():
            p.requires_grad_(True)
        return model

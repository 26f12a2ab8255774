"""Full fine-tuning: every parameter trains."""
from .base import Method


class FullFineTuning(Method):
    name = "full"
    default_lr = {"encoder": 2e-5, "encoder-decoder": 1e-4, "decoder": 1e-5}

    def apply(self, model, spec, ctx):
        for p in model.parameters():
            p.requires_grad_(True)
        return model

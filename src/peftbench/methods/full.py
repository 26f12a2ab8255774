"""Full fine-tuning: every parameter trains."""
from .base import Method, lrs


class FullFineTuning(Method):
    name = "full"
    default_lr = lrs(2e-5, 1e-4, 1e-5)

    def apply(self, model, options, ctx):
        for p in model.parameters():
            p.requires_grad_(True)
        return model

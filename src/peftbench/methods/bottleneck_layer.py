"""The bottleneck adapter layer (torch): ``h -> h + up(act(down(h)))``, ``up`` starting at zero so that the
adapted model starts as the base model."""
from __future__ import annotations

from torch import nn

ACTIVATION_LAYERS = {"relu": nn.ReLU, "gelu": nn.GELU, "silu": nn.SiLU, "tanh": nn.Tanh}


class BottleneckAdapter(nn.Module):
    def __init__(self, hidden: int, bottleneck: int, activation: str = "relu"):
        super().__init__()
        self.down = nn.Linear(hidden, bottleneck)
        self.act = ACTIVATION_LAYERS[activation]()
        self.up = nn.Linear(bottleneck, hidden)
        nn.init.normal_(self.down.weight, std=1e-2)
        nn.init.zeros_(self.down.bias)
        nn.init.zeros_(self.up.weight)  # the adapted model starts as the base model
        nn.init.zeros_(self.up.bias)

    def forward(self, h):
        return h + self.up(self.act(self.down(h)))

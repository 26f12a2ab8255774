"""TensorBoard: event files under the run folder's ``trackers/tensorboard`` (``tensorboard --logdir`` on the
results folder shows every run); the resolved config as text and as hyper-parameters, the final figures as
scalars at the last step."""
from __future__ import annotations

import json

from .base import Tracker, flatten


class TensorBoard(Tracker):
    name = "tensorboard"
    package = "tensorboard"

    def start(self, run_name, config, folder):
        from torch.utils.tensorboard import SummaryWriter

        folder.mkdir(parents=True, exist_ok=True)
        self.writer, self.config, self.step = SummaryWriter(log_dir=str(folder)), config, 0
        self.writer.add_text("config", f"```\n{json.dumps(config, indent=1, default=str)}\n```", 0)
        return str(folder)

    def log(self, values, step):
        self.step = max(self.step, step)
        for key, value in values.items():
            self.writer.add_scalar(key, value, step)

    def finish(self, summary):
        for key, value in summary.items():
            self.writer.add_scalar(key, value, self.step)
        params = {k: v if isinstance(v, (int, float, str, bool)) else json.dumps(v)
                  for k, v in flatten(self.config).items() if v is not None}
        self.writer.add_hparams(params, {k: v for k, v in summary.items() if k.startswith("test/")} or {"done": 1.0},
                                run_name=".")
        self.writer.close()

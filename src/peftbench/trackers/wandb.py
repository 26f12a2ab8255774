"""Weights & Biases: offline by default (``WANDB_MODE=offline`` unless set), files under the run folder's
``trackers/wandb`` (``wandb sync`` uploads them later); with ``WANDB_MODE=online`` and a key, to the service."""
from __future__ import annotations

import os

from .base import Tracker


class WandB(Tracker):
    name = "wandb"
    package = "wandb"

    def start(self, run_name, config, folder):
        import wandb

        folder.mkdir(parents=True, exist_ok=True)
        mode = os.environ.get("WANDB_MODE", "offline")
        self.run = wandb.init(project=os.environ.get("WANDB_PROJECT", "peftbench"), name=run_name, config=config,
                              dir=str(folder), mode=mode, reinit="create_new",
                              settings=wandb.Settings(silent=True))  # (its summary would bury the progress bars)
        return f"{mode}: {folder}"

    def log(self, values, step):
        self.run.log(values, step=step)

    def finish(self, summary):
        self.run.summary.update(summary)
        self.run.finish()

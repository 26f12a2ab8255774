"""Trackio (Hugging Face's local-first tracker): a run in the project named by the grid, its database under the
run folder's ``trackers/trackio`` unless ``TRACKIO_DIR`` is set; nothing is sent to a Space unless
``TRACKIO_SPACE_ID`` names one."""
from __future__ import annotations

import os

from .base import Tracker


class Trackio(Tracker):
    name = "trackio"
    package = "trackio"

    def start(self, run_name, config, folder):
        folder.mkdir(parents=True, exist_ok=True)
        os.environ.setdefault("TRACKIO_DIR", str(folder))  # (read when trackio is imported; this run's process)
        import trackio

        self.run = trackio.init(project=os.environ.get("TRACKIO_PROJECT", "peftbench"), name=run_name, config=config,
                                space_id=os.environ.get("TRACKIO_SPACE_ID"))
        return os.environ["TRACKIO_DIR"]

    def log(self, values, step):
        self.run.log(values, step=step)

    def finish(self, summary):
        self.run.log(summary)
        self.run.finish()

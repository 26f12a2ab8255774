"""MLflow: a run in the experiment named by the grid, through ``MlflowClient`` (no global state, so in-process
grids stay apart). Where ``MLFLOW_TRACKING_URI`` is not set, the records go to a file store under the run
folder's ``trackers/mlflow`` (MLflow 3 keeps its file store only with ``MLFLOW_ALLOW_FILE_STORE=true``,
which this sets for that store alone); with it set, to that server or database."""
from __future__ import annotations

import json
import os

from .base import Tracker, flatten

PARAM_CHARS = 6000  # MLflow refuses longer parameter values


class MLflow(Tracker):
    name = "mlflow"
    package = "mlflow"
    extra = "mlflow"

    def start(self, run_name, config, folder):
        from mlflow.tracking import MlflowClient

        uri = os.environ.get("MLFLOW_TRACKING_URI")
        if not uri:
            folder.mkdir(parents=True, exist_ok=True)
            uri = folder.resolve().as_uri()
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")  # (this run's own process)
        self.client = MlflowClient(tracking_uri=uri)
        experiment = os.environ.get("MLFLOW_EXPERIMENT_NAME") or "peftbench"
        found = self.client.get_experiment_by_name(experiment)
        exp_id = found.experiment_id if found else self.client.create_experiment(experiment)
        self.run_id = self.client.create_run(exp_id, run_name=run_name).info.run_id
        for key, value in flatten(config).items():
            text = value if isinstance(value, str) else json.dumps(value, default=str)
            self.client.log_param(self.run_id, key, text[:PARAM_CHARS])
        return uri

    def log(self, values, step):
        for key, value in values.items():
            self.client.log_metric(self.run_id, key, value, step=step)

    def finish(self, summary):
        for key, value in summary.items():
            self.client.log_metric(self.run_id, key, value)
        self.client.set_terminated(self.run_id)

    def abort(self):
        self.client.set_terminated(self.run_id, status="FAILED")

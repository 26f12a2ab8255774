"""Experiment trackers (``train.trackers``): a run's per-step loss, per-epoch validation, resolved config and final
costs, sent to TensorBoard, MLflow, Trackio or Weights & Biases. Each is an optional extra
(``pip install 'peftbench[tensorboard]'``) and writes files under the run folder's ``trackers/`` unless its own
settings (environment variables such as ``MLFLOW_TRACKING_URI`` or ``WANDB_MODE``) send it elsewhere: nothing
leaves the machine unless configured. A new tracker is one module with a ``Tracker`` subclass plus one registry
line (``registry.py``, or a ``peftbench.trackers`` entry point)."""
from .base import Tracker, Trackers, flatten, missing

__all__ = ["Tracker", "Trackers", "flatten", "missing"]

"""Training, calibration, export and evaluation. Needs the ``[train]`` extra (torch, timm),
except :mod:`catdog.training.metrics` and :mod:`catdog.training.evaluate`, which run on the engine."""

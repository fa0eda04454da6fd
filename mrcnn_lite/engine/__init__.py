"""Training and inference loops around the model: schedule, checkpoints, trainer, dataset inference.

- :mod:`~mrcnn_lite.engine.schedule`: SGD and the step schedule with linear warm-up (§3.1 "Training").
- :mod:`~mrcnn_lite.engine.checkpoint`: atomic, ``weights_only``-loadable checkpoints.
- :mod:`~mrcnn_lite.engine.trainer`: :func:`train`, deterministic and resumable: the loop, built from
  :mod:`~mrcnn_lite.engine.batches` (seeded batches), :mod:`~mrcnn_lite.engine.step` (one optimizer step),
  :mod:`~mrcnn_lite.engine.resume` (``last_checkpoint``, RNG states), :mod:`~mrcnn_lite.engine.metrics_log`
  (``metrics.jsonl``) and :mod:`~mrcnn_lite.engine.divergence` (non-finite checks, the error's message).
- :mod:`~mrcnn_lite.engine.inference`: :func:`predict_dataset` with per-stage timing (§4 "Timing") and
  :func:`evaluate_model` (COCO box and mask AP).
- :mod:`~mrcnn_lite.engine.run`: what runs a model, for every caller (CLI, Table 2 runner, notebooks,
  benchmarks): a run's config, train-or-resume, train-and-evaluate and its record, seeding, git commit.
"""

from mrcnn_lite.engine.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from mrcnn_lite.engine.inference import evaluate_model, predict_dataset
from mrcnn_lite.engine.schedule import build_optimizer, lr_at
from mrcnn_lite.engine.trainer import train

__all__ = [
    "CheckpointError",
    "build_optimizer",
    "evaluate_model",
    "load_checkpoint",
    "lr_at",
    "predict_dataset",
    "save_checkpoint",
    "train",
]

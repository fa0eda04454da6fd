"""The command line: ``python -m mrcnn_lite {train,evaluate,predict,table2}``.

- ``train``: a preset plus ``--set`` overrides, into ``--out`` (see :func:`mrcnn_lite.engine.train`);
- ``evaluate``: COCO box and mask AP of a checkpoint (paper Tables 1-3) and the time per stage (§4);
- ``predict``: overlays of the detections (masks, boxes, class and score) on your own images;
- ``table2``: the paper's ablations (Table 2, Table 3's box AP) rerun with papermill, several seeds each
  (see :mod:`mrcnn_lite.ablations`).

Run ``python -m mrcnn_lite COMMAND --help`` for each command's options.

``train`` and ``evaluate`` also run in several processes: ``torchrun --nproc_per_node=N -m mrcnn_lite
train ...`` (DistributedDataParallel; NCCL on GPUs, gloo on the CPU; ``train.images_per_batch`` is the
global batch). Rank 0 prints and writes the outputs.

Errors a user can cause (a missing or unreadable file, a file that is not a checkpoint or an image, a bad
preset, key or value, an ``--out`` that cannot be written, nothing to ``--resume``, a diverged training
run) print one paragraph, ``python -m mrcnn_lite: error: ...``, to stderr and exit with 2 (1 for a
diverged run, and for ``predict`` when some images could not be read); no traceback. Everything else (a
bug) raises as usual. ``MRCNN_LITE_DEBUG=1`` re-raises the user errors too, with their traceback.

The package: :mod:`~mrcnn_lite.cli.parser` (the options and help), :mod:`~mrcnn_lite.cli.errors` (the
one-paragraph error path), :mod:`~mrcnn_lite.cli.checks` (``--device``, output paths),
:mod:`~mrcnn_lite.cli.runs` (a trained run's config and weights), and one module per command:
:mod:`~mrcnn_lite.cli.train`, :mod:`~mrcnn_lite.cli.evaluate`, :mod:`~mrcnn_lite.cli.predict`,
:mod:`~mrcnn_lite.cli.table2`.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

from mrcnn_lite.cli.errors import DEBUG_ENV, PROG, USER_ERRORS, UsageError, reported
from mrcnn_lite.cli.evaluate import cmd_evaluate, format_metrics
from mrcnn_lite.cli.parser import EPILOG, build_parser
from mrcnn_lite.cli.predict import cmd_predict
from mrcnn_lite.cli.table2 import cmd_table2
from mrcnn_lite.cli.train import cmd_train
from mrcnn_lite.engine.distributed import cleanup, init_distributed

__all__ = [
    "COMMANDS",
    "DEBUG_ENV",
    "EPILOG",
    "PROG",
    "USER_ERRORS",
    "UsageError",
    "build_parser",
    "cmd_evaluate",
    "cmd_predict",
    "cmd_table2",
    "cmd_train",
    "format_metrics",
    "main",
]

COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "train": cmd_train,
    "evaluate": cmd_evaluate,
    "predict": cmd_predict,
    "table2": cmd_table2,
}


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv`` and run the command. User errors (:data:`USER_ERRORS`) print ``error: ...`` (one
    paragraph, no traceback) and return 2, or 1 for a diverged run (:class:`NonFiniteError`); with
    ``MRCNN_LITE_DEBUG=1`` they are raised instead. Any other exception (a bug) propagates."""
    args = build_parser().parse_args(argv)

    def run() -> int:
        init_distributed()  # under torchrun (WORLD_SIZE > 1); a no-op otherwise
        return COMMANDS[args.command](args)

    try:
        return reported(run)
    finally:
        cleanup()

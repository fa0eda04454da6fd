"""``python -m mrcnn_lite train``: a preset plus ``--set`` overrides, trained into ``--out``
(:func:`mrcnn_lite.engine.trainer.train`; He et al. 2017, §3.1 "Training")."""

from __future__ import annotations

import argparse
from pathlib import Path

from mrcnn_lite.cli.checks import check_device, writable_folder
from mrcnn_lite.cli.errors import UsageError
from mrcnn_lite.engine.distributed import is_main_process
from mrcnn_lite.engine.run import run_config
from mrcnn_lite.engine.trainer import LAST, train


def cmd_train(args: argparse.Namespace) -> int:
    """Check the options and the output folder, then train; prints the last iteration and checkpoint."""
    cfg = run_config(args.config, args.overrides)
    out = args.out or Path("runs") / cfg.name
    check_device(args.device)
    if args.max_iter is not None and args.max_iter < 1:
        raise UsageError(f"--max-iter {args.max_iter}: expected an iteration number of at least 1")
    if args.resume and not (out / LAST).is_file():
        raise UsageError(
            f"--resume: nothing to resume in {out} (it has no {LAST} file, which a run writes with its first "
            "checkpoint); give the --out folder of the run to continue, or leave out --resume to start one"
        )
    writable_folder(out, "--out", "the run's checkpoints and logs")
    result = train(
        cfg, out, resume=args.resume, max_iter=args.max_iter, progress=not args.quiet, device=args.device
    )
    if is_main_process():
        print(f"trained to iteration {result['iteration']}; checkpoint {result['checkpoint']}")
    return 0

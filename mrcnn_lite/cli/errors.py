"""User errors: what a user's input or environment can cause is reported in one paragraph, no traceback.

``python -m mrcnn_lite: error: ...`` on stderr, exit code 2 (1 for a diverged run); ``MRCNN_LITE_DEBUG=1``
re-raises them with their traceback. Anything else (a bug) propagates as usual.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable

from mrcnn_lite.config import ConfigError
from mrcnn_lite.data.coco import CocoFormatError
from mrcnn_lite.engine.checkpoint import CheckpointError
from mrcnn_lite.modeling.finite import NonFiniteError

PROG = "python -m mrcnn_lite"
DEBUG_ENV = "MRCNN_LITE_DEBUG"


class UsageError(ValueError):
    """A bad command-line value (an option, a path); the message names it and says what was expected."""


# What a user's input or environment can cause: reported in one paragraph, without a traceback.
USER_ERRORS = (OSError, ConfigError, CheckpointError, CocoFormatError, UsageError, NonFiniteError)


def message(e: BaseException) -> str:
    """The error's text; an ``OSError`` without a message of its own gets its file name and reason."""
    if isinstance(e, OSError) and e.strerror and e.filename:
        return f"{e.filename}: {e.strerror}"
    return str(e)


def reported(command: Callable[[], int]) -> int:
    """Run ``command`` and return its exit code; a user error (:data:`USER_ERRORS`) prints ``error: ...``
    and returns 2, or 1 for a diverged run (:class:`NonFiniteError`); Ctrl-C prints one line and returns
    130. With ``MRCNN_LITE_DEBUG=1`` both are raised instead."""
    debug = os.environ.get(DEBUG_ENV, "") not in ("", "0")
    try:
        return command()
    except USER_ERRORS as e:
        if debug:
            raise
        print(f"{PROG}: error: {message(e)}", file=sys.stderr)
        return 1 if isinstance(e, NonFiniteError) else 2
    except KeyboardInterrupt:
        if debug:
            raise
        print(
            f"{PROG}: interrupted; the files written so far are complete (continue a training run with "
            "--resume)",
            file=sys.stderr,
        )
        return 130

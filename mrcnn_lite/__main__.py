"""``python -m mrcnn_lite``: train, evaluate and predict from the command line (see :mod:`mrcnn_lite.cli`)."""

import sys

from mrcnn_lite.cli import main

if __name__ == "__main__":
    sys.exit(main())

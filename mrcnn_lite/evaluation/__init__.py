"""Measuring the model as the paper does: COCO AP through pycocotools (`coco_eval.py`), and reading the
finished evaluation: AP per class and size, precision-recall curves, per-image matches and failure types
(`analysis.py`)."""

"""Measuring the model as the paper does: COCO AP through pycocotools (`coco_eval.py`)."""

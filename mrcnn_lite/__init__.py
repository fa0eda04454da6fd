"""mrcnn_lite: Mask R-CNN (He et al., ICCV 2017) rebuilt step by step, small enough to read."""

__version__ = "0.1.0"

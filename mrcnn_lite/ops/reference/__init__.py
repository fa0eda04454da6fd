"""Pure-PyTorch reference RoI operators: readable, vectorized, differentiable by autograd.

They define the semantics the C++/CUDA kernels in ``mrcnn_lite/csrc`` must reproduce; ``roi_pool`` and
``roi_align(mode="avg")`` equal ``torchvision.ops.roi_pool`` / ``roi_align``.
"""

from .align import roi_align
from .pool import roi_pool
from .warp import roi_warp

__all__ = ["roi_align", "roi_pool", "roi_warp"]

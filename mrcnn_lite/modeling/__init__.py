"""The Mask R-CNN model, one file per idea (He et al., ICCV 2017, §3 and §3.1).

Layout (detectron2's split: generic operators live in :mod:`mrcnn_lite.ops`, model parts here), in the
order an image flows through them:

- ``backbone.py``: ResNet-18/34/50/101 and ResNeXt-101 32x8d trunks (torchvision's blocks, with a channel
  ``width`` setting, frozen BN, ``freeze_at``) and ``build_backbone`` for the C4, C5 and FPN uses (§3.1,
  Figure 4).
- ``fpn.py``: the feature pyramid P2..P6 over C2..C5 (Lin et al. 2017).
- ``anchors.py``, ``box_coder.py``, ``matcher.py``, ``sampler.py``, ``rpn.py``: the Region Proposal Network
  (Faster R-CNN) and its parts: anchors, box deltas, IoU matching, positive/negative sampling.
- ``poolers.py``: RoI features from one map or, with FPN's level assignment, from the pyramid (Figure 3).
- ``box_head.py``, ``mask_head.py``, ``losses.py``, ``roi_heads.py``: the second stage: box and mask heads
  (Figure 4, Table 2e), their targets and losses, and the modules that run them: ``StandardRoIHeads``
  (C5, FPN) and ``Res5RoIHeads`` (C4: res5 shared by the box predictor and the mask head).
- ``postprocess.py``: inference, detections then masks pasted into the image.
- ``mask_rcnn.py``, ``build.py``: the whole model, and building it from a :class:`mrcnn_lite.config.Config`
  (the one place that reads the config: which heads a config's ``arch`` and ``mask_head`` mean).

Import the submodules directly, e.g. ``from mrcnn_lite.modeling.backbone import build_backbone``.
"""

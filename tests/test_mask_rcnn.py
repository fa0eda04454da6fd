"""The assembled model: every Table 2 variant builds the modules its config names (:mod:`wiring`), trains
(losses that reach the heads they should) and predicts (detections); C4's res5 serves both branches; and a
classroom model overfits one shapes image (§3 of the paper end to end)."""

from __future__ import annotations

import pytest
import torch
from wiring import check_wiring  # tests/ is on sys.path (pytest prepends it)

from mrcnn_lite.config import ConfigError, get_config
from mrcnn_lite.data.coco import CocoDetection
from mrcnn_lite.data.transforms import build_transforms
from mrcnn_lite.modeling.build import build_model
from mrcnn_lite.modeling.mask_rcnn import batch_images
from mrcnn_lite.modeling.roi_heads import Res5RoIHeads, StandardRoIHeads

RPN_LOSSES = {"loss_rpn_objectness", "loss_rpn_box"}
HEAD_LOSSES = {"loss_cls", "loss_box"}


@pytest.fixture(scope="module")
def batch(shapes_small):
    ds = CocoDetection(shapes_small, "train2017", train=True, transforms=build_transforms(False, 192, 256))
    images, targets = zip(*[ds[i] for i in range(2)], strict=True)
    return list(images), list(targets), len(ds.class_names)


VARIANTS = {
    "fpn fcn": ("classroom_fpn", []),
    "c4": ("classroom_c4", []),
    "c5": ("classroom_c5", []),
    "fpn mlp1": ("classroom_fpn", ["model.mask_head=mlp1"]),
    "fpn mlp2": ("classroom_fpn", ["model.mask_head=mlp2"]),
    "c4 softmax": ("classroom_c4", ["model.mask_loss=softmax"]),
    "c4 class-agnostic": ("classroom_c4", ["model.class_agnostic_masks=true"]),
    "c4 roi_pool": ("classroom_c4", ["model.roi_op=roi_pool", "model.roi_mode=max"]),
    "c5 roi_warp max": ("classroom_c5", ["model.roi_op=roi_warp", "model.roi_mode=max"]),
    "fpn agnostic unaligned": (
        "classroom_fpn",
        ["model.class_agnostic_masks=true", "model.roi_aligned=false"],
    ),
}


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_train_losses_and_eval_detections(variant: str, batch) -> None:
    images, targets, num_classes = batch
    preset, overrides = VARIANTS[variant]
    torch.manual_seed(0)
    cfg = get_config(preset, [*overrides, "model.width=16"])
    model = build_model(cfg, num_classes)
    check_wiring(cfg, model, num_classes)  # the RoI operator, heads, widths, m, K_out and loss it names
    losses = model(images, targets)
    assert set(losses) == RPN_LOSSES | HEAD_LOSSES | {"loss_mask"}
    assert all(v.dim() == 0 and torch.isfinite(v) for v in losses.values()), losses
    sum(losses.values()).backward()
    heads = model.roi_heads
    for part in (heads.mask_head, heads.box_head.predictor.cls_score, heads.box_head.predictor.bbox_pred):
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in part.parameters()), part

    model.eval()
    sizes = [tuple(t["orig_size"]) for t in targets]
    with torch.no_grad():
        out = model(images, orig_sizes=sizes)
    assert len(out) == 2
    for det, (h, w) in zip(out, sizes, strict=True):
        n = len(det["boxes"])
        assert 0 < n <= cfg.model.detections_per_image  # an untrained model scores everything ~uniformly
        assert det["boxes"].shape == (n, 4) and det["scores"].shape == (n,) and det["labels"].shape == (n,)
        assert det["masks"].shape == (n, 1, h, w) and det["masks"].dtype == torch.bool
        assert (det["boxes"][:, 2] <= w + 1e-3).all() and (det["boxes"][:, 3] <= h + 1e-3).all()
        assert ((det["labels"] >= 1) & (det["labels"] < num_classes)).all()


@pytest.mark.parametrize("preset", ["classroom_c4", "classroom_fpn"])
def test_mask_loss_reaches_res5_with_c4_only(preset: str, batch) -> None:
    """Figure 4: C4 runs res5 once per sampled RoI, and its output feeds the box predictor *and* the mask
    head (L_mask trains res5); C5/FPN pool separate features for the mask head (L_mask leaves the box head
    alone). The same training forward, with the same sampled RoIs, gives the same losses however often the
    heads are called: res5 is not run twice in training."""
    images, targets, num_classes = batch
    torch.manual_seed(0)
    model = build_model(get_config(preset, ["model.width=16"]), num_classes)
    heads = model.roi_heads
    assert isinstance(heads, Res5RoIHeads if preset == "classroom_c4" else StandardRoIHeads)
    calls: list[int] = []
    heads.box_pooler.register_forward_hook(lambda _m, _i, out: calls.append(len(out)))
    model(images, targets)["loss_mask"].backward()
    assert len(calls) == 1  # one pooling for the box branch (and, for C4, the mask branch)
    box_grads = [p.grad for p in heads.box_head.parameters() if p.requires_grad]
    reached = any(g is not None and g.abs().sum() > 0 for g in box_grads)
    assert reached == (preset == "classroom_c4")


def test_faster_rcnn_mode_has_no_mask_branch(batch) -> None:
    images, targets, num_classes = batch
    model = build_model(get_config("classroom_fpn", ["model.with_mask=false", "model.width=16"]), num_classes)
    assert model.roi_heads.mask_head is None and model.roi_heads.mask_pooler is None
    assert set(model(images, targets)) == RPN_LOSSES | HEAD_LOSSES
    model.eval()
    with torch.no_grad():
        assert "masks" not in model(images)[0]


def test_boxes_are_rescaled_to_the_original_size(batch) -> None:
    images, targets, num_classes = batch
    torch.manual_seed(0)
    model = build_model(get_config("classroom_c5", ["model.width=16"]), num_classes).eval()
    with torch.no_grad():
        resized = model(images[:1])[0]
        h, w = images[0].shape[-2:]
        original = model(images[:1], orig_sizes=[(2 * h, 3 * w)])[0]
    torch.testing.assert_close(original["boxes"], resized["boxes"] * torch.tensor([3.0, 2.0, 3.0, 2.0]))
    assert original["masks"].shape[-2:] == (2 * h, 3 * w)


def test_batch_images_pads_to_multiples_of_32() -> None:
    a, b = torch.rand(3, 50, 70), torch.rand(3, 65, 33)
    batched = batch_images([a, b])
    assert batched.tensors.shape == (2, 3, 96, 96) and batched.image_sizes == [(50, 70), (65, 33)]
    assert torch.equal(batched.tensors[0, :, :50, :70], a) and batched.tensors[0, :, 50:].abs().sum() == 0
    assert torch.equal(batched.tensors[1, :, :65, :33], b) and batched.tensors[1, :, :, 33:].abs().sum() == 0
    nhwc = batch_images([a, b], memory_format=torch.channels_last).tensors
    assert nhwc.is_contiguous(memory_format=torch.channels_last) and torch.equal(nhwc, batched.tensors)


def test_bad_configs_and_missing_class_count() -> None:
    with pytest.raises(ConfigError, match="unknown preset"):
        get_config("classroom_fpm")
    with pytest.raises(ConfigError, match="model.roi_opp"):
        get_config("classroom_fpn", ["model.roi_opp=roi_pool"])
    with pytest.raises(ConfigError, match="box_head='res5' needs model.arch='c4'"):
        get_config("classroom_fpn", ["model.box_head=res5"])
    with pytest.raises(ValueError, match="num_classes is unknown"):
        build_model(get_config("classroom_fpn"))


def _compact(target: dict) -> bool:
    """3-5 instances, each a compact visible piece (>= 150 px filling >= 30% of its box): the dataset's
    heavily occluded fragments are its hard cases, not what an overfitting check is about."""
    boxes, masks = target["boxes"], target["masks"]
    fill = masks.flatten(1).sum(1) / ((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]))
    return 3 <= len(masks) <= 5 and bool((target["area"] >= 150).all() and (fill >= 0.3).all())


@pytest.mark.slow
def test_overfits_one_image(shapes_small) -> None:
    """Trained on one image for 200 SGD steps, the classroom model finds every instance (mask IoU >= 0.8)."""
    torch.manual_seed(0)
    ds = CocoDetection(shapes_small, "train2017", train=True, transforms=build_transforms(False, 224, 320))
    image, target = next((im, t) for im, t in (ds[i] for i in range(len(ds))) if _compact(t))
    model = build_model(get_config("classroom_fpn"), len(ds.class_names))
    opt = torch.optim.SGD(model.parameters(), lr=0.02, momentum=0.9, weight_decay=1e-4)
    for it in range(200):
        for group in opt.param_groups:
            group["lr"] = 0.02 * min(1.0, (it + 1) / 50)  # linear warm-up
        loss = sum(model([image], [target]).values())
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 10.0)
        opt.step()
    model.eval()
    with torch.no_grad():
        det = model([image])[0]
    confident = det["scores"] >= 0.5
    for gt_mask, gt_label in zip(target["masks"].bool(), target["labels"], strict=True):
        candidates = det["masks"][confident & (det["labels"] == gt_label), 0]
        ious = [((m & gt_mask).sum() / (m | gt_mask).sum()).item() for m in candidates]
        assert max(ious, default=0.0) >= 0.8, f"class {int(gt_label)}: best mask IoU {max(ious, default=0.0)}"

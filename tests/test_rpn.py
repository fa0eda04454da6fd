"""The RPN against torchvision's ``RegionProposalNetwork`` with identical weights, and hand-computed losses.

Exactness: our ``RPNHead`` state is copied into torchvision's ``RPNHead`` (``conv`` -> ``conv.0.0``), both
use the same anchors, and sampling is made identical by seeding: torchvision's sampler draws
``torch.randperm`` from the global RNG (positives, then negatives, image by image) and ours draws the same
calls from ``rpn.generator``; ``torch.manual_seed(s)`` just before torchvision's forward and
``torch.Generator().manual_seed(s)`` for ours give the same permutations. A second check samples every
labelled anchor (batch size larger than the number of anchors), where the losses do not depend on the RNG.
"""

from __future__ import annotations

from collections import OrderedDict

import pytest
import torch
import torch.nn.functional as F
from torchvision.models.detection.anchor_utils import AnchorGenerator as TVAnchorGenerator
from torchvision.models.detection.image_list import ImageList
from torchvision.models.detection.rpn import RegionProposalNetwork as TVRegionProposalNetwork
from torchvision.models.detection.rpn import RPNHead as TVRPNHead

from mrcnn_lite.modeling.anchors import AnchorGenerator
from mrcnn_lite.modeling.box_coder import BoxCoder
from mrcnn_lite.modeling.rpn import RegionProposalNetwork, RPNHead

C = 8  # feature channels: small, for speed
SETTINGS = {
    # name: (sizes, ratios, feature strides)
    "c4": (((32, 64, 128, 256, 512),), ((0.5, 1.0, 2.0),), (16,)),
    "fpn": (((32,), (64,), (128,), (256,), (512,)), ((0.5, 1.0, 2.0),) * 5, (4, 8, 16, 32, 64)),
}
BATCH_HW = (128, 160)
IMAGE_SIZES = [(128, 160), (100, 150)]  # the second image is padded


def make_pair(setting: str, **kwargs) -> tuple[RegionProposalNetwork, TVRegionProposalNetwork]:
    """Our RPN and torchvision's, same anchors, same head weights (re-drawn larger than N(0, 0.01²) so the
    scores and deltas are diverse: top-k, clipping and NMS all have something to do)."""
    sizes, ratios, _ = SETTINGS[setting]
    args = dict(
        fg_iou_thresh=0.7,
        bg_iou_thresh=0.3,
        batch_size_per_image=256,
        positive_fraction=0.5,
        pre_nms_top_n=dict(training=80, testing=50),
        post_nms_top_n=dict(training=60, testing=40),
        nms_thresh=0.7,
    )
    args.update(kwargs)
    gen = torch.Generator().manual_seed(0)
    head = RPNHead(C, len(sizes[0]) * len(ratios[0]))
    with torch.no_grad():
        for name, p in head.named_parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * (0.05 if name.startswith("bbox_pred") else 0.3))
    ours = RegionProposalNetwork(AnchorGenerator(sizes, ratios), head, **args)
    tv_head = TVRPNHead(C, len(sizes[0]) * len(ratios[0]))
    tv_head.load_state_dict({k.replace("conv.", "conv.0.0.", 1): v for k, v in head.state_dict().items()})
    theirs = TVRegionProposalNetwork(TVAnchorGenerator(sizes, ratios), tv_head, **args)
    return ours, theirs


def make_inputs(setting: str, seed: int = 0) -> tuple[ImageList, OrderedDict[str, torch.Tensor]]:
    gen = torch.Generator().manual_seed(seed)
    strides = SETTINGS[setting][2]
    images = ImageList(torch.zeros(len(IMAGE_SIZES), 3, *BATCH_HW), IMAGE_SIZES)
    h, w = BATCH_HW
    feats = OrderedDict(
        (str(i), torch.randn(len(IMAGE_SIZES), C, -(-h // s), -(-w // s), generator=gen))
        for i, s in enumerate(strides)
    )
    return images, feats


def make_targets(seed: int = 0, counts: tuple[int, ...] = (3, 5)) -> list[dict[str, torch.Tensor]]:
    gen = torch.Generator().manual_seed(seed)
    targets = []
    for (h, w), n in zip(IMAGE_SIZES, counts, strict=True):
        xy = torch.rand(n, 2, generator=gen) * torch.tensor([w * 0.6, h * 0.6])
        wh = torch.rand(n, 2, generator=gen) * torch.tensor([w * 0.4, h * 0.4]) + 12
        targets.append({"boxes": torch.cat([xy, xy + wh], 1), "labels": torch.ones(n, dtype=torch.int64)})
    return targets


def run_both(ours, theirs, images, feats, targets=None, seed: int = 0):
    ours.generator = torch.Generator().manual_seed(seed)
    out_ours = ours(images, feats, targets)
    torch.manual_seed(seed)
    out_theirs = theirs(images, feats, targets)
    return out_ours, out_theirs


# ---- head -------------------------------------------------------------------------------------------------


def test_head_shapes_and_init() -> None:
    torch.manual_seed(0)
    head = RPNHead(64, 15)
    logits, deltas = head([torch.randn(2, 64, 6, 7), torch.randn(2, 64, 3, 4)])
    assert [t.shape for t in logits] == [(2, 15, 6, 7), (2, 15, 3, 4)]
    assert [t.shape for t in deltas] == [(2, 60, 6, 7), (2, 60, 3, 4)]
    for layer in (head.conv, head.cls_logits, head.bbox_pred):
        assert torch.count_nonzero(layer.bias) == 0
    assert abs(head.conv.weight.std().item() - 0.01) < 5e-4  # 36,864 draws of N(0, 0.01²)
    assert abs(head.conv.weight.mean().item()) < 5e-4


def test_head_equals_torchvision() -> None:
    ours, theirs = make_pair("fpn")
    _, feats = make_inputs("fpn")
    for a, b in zip(ours.head(list(feats.values())), theirs.head(list(feats.values())), strict=True):
        for x, y in zip(a, b, strict=True):
            assert torch.equal(x, y)


# ---- proposals --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("setting", ["c4", "fpn"])
def test_eval_proposals_equal_torchvision(setting: str) -> None:
    ours, theirs = make_pair(setting)
    ours.eval(), theirs.eval()
    images, feats = make_inputs(setting)
    with torch.no_grad():
        (props, losses), (tv_props, tv_losses) = run_both(ours, theirs, images, feats)
    assert losses == tv_losses == {}
    for p, q, (h, w) in zip(props, tv_props, IMAGE_SIZES, strict=True):
        assert torch.equal(p, q)
        assert len(p) <= 40 and bool((p[:, 2] <= w).all() and (p[:, 3] <= h).all())

    # the comparison exercised every stage: top-k per level, NMS suppressing, the post-NMS cap
    out = ours.propose(images, feats)
    levels = len(SETTINGS[setting][2])
    assert all(len(d["pre_nms_boxes"]) <= 50 * levels for d in out["per_image"])
    assert any(len(d["boxes"]) < len(d["pre_nms_boxes"]) for d in out["per_image"])
    if setting == "fpn":
        assert len(set(out["per_image"][0]["levels"].tolist())) > 1  # proposals from several levels


def test_propose_matches_forward_and_decoding() -> None:
    ours, _ = make_pair("fpn")
    ours.eval()
    images, feats = make_inputs("fpn", seed=3)
    out = ours.propose(images, feats)
    props, _ = ours(images, feats)
    for d, p in zip(out["per_image"], props, strict=True):
        assert torch.equal(d["boxes"], p)
        assert bool((d["scores"][:-1] >= d["scores"][1:]).all())  # sorted by objectness
    a = out["anchors"][0]
    assert out["num_anchors_per_level"] == [
        3 * h * w for h, w in [(32, 40), (16, 20), (8, 10), (4, 5), (2, 3)]
    ]
    torch.testing.assert_close(out["decoded"][0], BoxCoder().decode(out["deltas"][0].detach(), a))


def test_select_proposals_clip_and_min_size_like_torchvision() -> None:
    """Hand case: one box entirely right of the image clips to zero width and is removed; two overlapping
    boxes on different levels both survive (NMS is per level); the duplicate on the same level does not."""
    ours, theirs = make_pair("c4")  # min_size 1e-3 in both
    ours.eval(), theirs.eval()
    boxes = torch.tensor(
        [
            [
                [10.0, 10.0, 50.0, 50.0],
                [11.0, 10.0, 51.0, 50.0],
                [200.0, 10.0, 240.0, 50.0],
                [10.0, 10.0, 50.0, 50.0],
            ]
        ]
    )
    logits = torch.tensor([[2.0, 1.0, 3.0, 0.5]])
    (d,) = ours.select_proposals(boxes, logits, [(100, 100)], [3, 1])
    torch.testing.assert_close(d["boxes"], boxes[0, [0, 3]])
    assert d["levels"].tolist() == [0, 1]
    tv_boxes, tv_scores = theirs.filter_proposals(boxes, logits, [(100, 100)], [3, 1])
    assert torch.equal(d["boxes"], tv_boxes[0]) and torch.equal(d["scores"], tv_scores[0])


# ---- training ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("setting", ["c4", "fpn"])
@pytest.mark.parametrize("seed", [0, 1])
def test_train_losses_and_gradients_equal_torchvision(setting: str, seed: int) -> None:
    ours, theirs = make_pair(setting)
    ours.train(), theirs.train()
    images, feats = make_inputs(setting, seed)
    targets = make_targets(seed)
    (props, losses), (tv_props, tv_losses) = run_both(ours, theirs, images, feats, targets, seed=seed)
    assert set(losses) == {"loss_rpn_objectness", "loss_rpn_box"}
    assert torch.equal(losses["loss_rpn_objectness"], tv_losses["loss_objectness"])
    assert torch.equal(losses["loss_rpn_box"], tv_losses["loss_rpn_box_reg"])
    assert losses["loss_rpn_box"] > 0
    for p, q in zip(props, tv_props, strict=True):
        assert torch.equal(p, q) and not p.requires_grad  # proposals are detached

    sum(losses.values()).backward()
    sum(tv_losses.values()).backward()
    grads = {k.replace("conv.", "conv.0.0.", 1): p.grad for k, p in ours.head.named_parameters()}
    for k, p in theirs.head.named_parameters():
        torch.testing.assert_close(grads[k], p.grad, rtol=1e-6, atol=1e-9)

    # control: the sampling is what the seeding aligns; another seed draws other anchors, other losses
    ours.generator = torch.Generator().manual_seed(seed + 100)
    _, other = ours(images, feats, targets)
    assert other["loss_rpn_objectness"] != losses["loss_rpn_objectness"]


def test_train_losses_equal_torchvision_all_anchors_sampled() -> None:
    """No RNG involved: a batch larger than the anchor count samples every positive and negative anchor."""
    ours, theirs = make_pair("fpn", batch_size_per_image=100_000, positive_fraction=0.5)
    ours.train(), theirs.train()
    images, feats = make_inputs("fpn", 5)
    targets = make_targets(5)
    (_, losses), (_, tv_losses) = run_both(ours, theirs, images, feats, targets, seed=1)
    ours.generator = torch.Generator().manual_seed(99)  # a different draw changes nothing
    _, losses_again = ours(images, feats, targets)
    for ok, tk in [("loss_rpn_objectness", "loss_objectness"), ("loss_rpn_box", "loss_rpn_box_reg")]:
        torch.testing.assert_close(losses[ok], tv_losses[tk], rtol=1e-6, atol=0)
        torch.testing.assert_close(losses_again[ok], losses[ok], rtol=1e-6, atol=0)


def test_losses_hand_computed() -> None:
    """The loss from its definition: BCE mean over the sampled anchors; smooth-L1 (beta 1/9) summed over the
    sampled positives and divided by the number sampled (positives + negatives)."""
    ours, _ = make_pair("c4")
    ours.train()
    images, feats = make_inputs("c4", 2)
    targets = make_targets(2)
    ours.generator = torch.Generator().manual_seed(4)
    _, losses = ours(images, feats, targets)

    out = ours.propose(images, feats)
    labels, matched = ours.assign_targets(out["anchors"], targets)
    pos, neg = ours.sampler(labels, torch.Generator().manual_seed(4))
    pos, neg = torch.stack(pos), torch.stack(neg)
    labels = torch.stack(labels)
    assert int(pos.sum()) > 0 and int(pos.sum() + neg.sum()) == 2 * 256
    p = torch.sigmoid(out["objectness"])
    y = labels
    bce = -(y * torch.log(p) + (1 - y) * torch.log(1 - p))
    torch.testing.assert_close(losses["loss_rpn_objectness"], bce[pos | neg].mean())

    t = torch.stack([BoxCoder().encode(m, a) for m, a in zip(matched, out["anchors"], strict=True)])
    diff = (out["deltas"] - t)[pos].abs()
    beta = 1 / 9
    smooth = torch.where(diff < beta, 0.5 * diff**2 / beta, diff - 0.5 * beta)
    torch.testing.assert_close(losses["loss_rpn_box"], smooth.sum() / (pos.sum() + neg.sum()))


def test_assign_targets_equals_torchvision() -> None:
    ours, theirs = make_pair("fpn")
    images, feats = make_inputs("fpn")
    targets = make_targets(1, counts=(4, 0))  # second image: no ground truth
    anchors = ours.anchor_generator(images, list(feats.values()))
    labels, matched = ours.assign_targets(anchors, targets)
    tv_labels, tv_matched = theirs.assign_targets_to_anchors(anchors, targets)
    for a, b in zip(labels + matched, tv_labels + tv_matched, strict=True):
        assert torch.equal(a, b)
    assert set(labels[0].tolist()) == {-1.0, 0.0, 1.0}
    assert bool((labels[1] == 0).all())
    # each ground truth has at least one positive anchor (Faster R-CNN's rule (i))
    pos_boxes = matched[0][labels[0] == 1]
    assert all(bool((pos_boxes == gt).all(1).any()) for gt in targets[0]["boxes"])


def test_image_without_boxes() -> None:
    ours, theirs = make_pair("c4")
    ours.train(), theirs.train()
    images, feats = make_inputs("c4", 1)
    empty = {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)}
    (_, losses), (_, tv_losses) = run_both(ours, theirs, images, feats, [empty, empty], seed=2)
    assert losses["loss_rpn_box"].item() == 0.0
    assert torch.equal(losses["loss_rpn_objectness"], tv_losses["loss_objectness"])
    out = ours.propose(images, feats)
    labels, _ = ours.assign_targets(out["anchors"], [empty, empty])
    assert all(bool((lab == 0).all()) for lab in labels)
    # every sampled anchor is negative: the loss is the mean of -log(1 - sigmoid(logit)) over 256 of them
    pos, neg = ours.sampler(labels, torch.Generator().manual_seed(2))
    assert sum(int(p.sum()) for p in pos) == 0 and all(int(n.sum()) == 256 for n in neg)
    expected = F.softplus(out["objectness"][torch.stack(neg)]).mean()
    torch.testing.assert_close(losses["loss_rpn_objectness"], expected)


def test_mixed_empty_and_nonempty_targets_equal_torchvision() -> None:
    ours, theirs = make_pair("fpn")
    ours.train(), theirs.train()
    images, feats = make_inputs("fpn", 4)
    targets = make_targets(4, counts=(0, 3))
    (_, losses), (_, tv_losses) = run_both(ours, theirs, images, feats, targets, seed=3)
    assert torch.equal(losses["loss_rpn_objectness"], tv_losses["loss_objectness"])
    assert torch.equal(losses["loss_rpn_box"], tv_losses["loss_rpn_box_reg"])


def test_training_requires_targets() -> None:
    ours, _ = make_pair("c4")
    ours.train()
    with pytest.raises(ValueError):
        ours(*make_inputs("c4"))

"""Box and mask heads (Figure 4, Table 2e) against torchvision's heads with copied weights, and by hand.

torchvision's ``TwoMLPHead`` + ``FastRCNNPredictor`` are Figure 4 right's box head; ``MaskRCNNHeads`` +
``MaskRCNNPredictor`` its mask head (4 convs, deconv, 1×1 conv); ``MaskRCNNPredictor`` alone is exactly the
C4 mask head of Figure 4 left (deconv + ReLU + 1×1 conv). Weights are copied in parameter order (the
layouts are the same), so the outputs must agree to float precision.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models import resnet18
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor

from mrcnn_lite.modeling.box_head import BoxPredictor, Res5BoxHead, TwoFCBoxHead
from mrcnn_lite.modeling.mask_head import C4MaskHead, FCNMaskHead, MLPMaskHead

K = 4  # classes, background included


def copy_params(src: list[nn.Module], dst: list[nn.Module]) -> None:
    """Copy parameters in order from the modules ``src`` into ``dst`` (same shapes, same order)."""
    src_params = [p for m in src for p in m.parameters()]
    dst_params = [p for m in dst for p in m.parameters()]
    assert [p.shape for p in src_params] == [p.shape for p in dst_params]
    with torch.no_grad():
        for s, d in zip(src_params, dst_params, strict=True):
            d.copy_(s)


def randomise(module: nn.Module, seed: int = 0) -> None:
    """Redraw every parameter ~N(0, 0.1²) so that no output is trivially zero."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.1)


def test_two_fc_box_head_equals_torchvision() -> None:
    ours = TwoFCBoxHead(8, resolution=7, fc_dim=32, num_classes=K)
    randomise(ours)
    tv_head, tv_pred = TwoMLPHead(8 * 7 * 7, 32), FastRCNNPredictor(32, K)
    copy_params([ours], [tv_head, tv_pred])
    x = torch.randn(5, 8, 7, 7)
    logits, deltas = ours(x)
    tv_logits, tv_deltas = tv_pred(tv_head(x))
    assert logits.shape == (5, K) and deltas.shape == (5, 4 * K)
    torch.testing.assert_close(logits, tv_logits)
    torch.testing.assert_close(deltas, tv_deltas)


def test_res5_box_head_pools_res5_and_splits_for_the_mask_branch() -> None:
    """C4: 14×14 RoI features -> res5 (stride 2) -> 7×7 -> mean -> linear, computed here step by step;
    ``forward`` is ``predict(run_res5(x))``, the split the C4 RoI heads use to share res5's output."""
    res5 = resnet18().layer4.eval()  # 256 -> 512 channels, first block stride 2
    head = Res5BoxHead(res5, res5_out_channels=512, num_classes=K).eval()
    randomise(head.predictor)
    x = torch.randn(3, 256, 14, 14)
    with torch.no_grad():
        logits, deltas = head(x)
        features = head.run_res5(x)
        expected_features = res5(x)
        split = head.predict(features)
    assert torch.equal(split[0], logits) and torch.equal(split[1], deltas)
    assert features.shape == (3, 512, 7, 7)
    torch.testing.assert_close(features, expected_features)
    pooled = expected_features.mean(dim=(2, 3))
    p = head.predictor
    torch.testing.assert_close(logits, F.linear(pooled, p.cls_score.weight, p.cls_score.bias))
    torch.testing.assert_close(deltas, F.linear(pooled, p.bbox_pred.weight, p.bbox_pred.bias))
    # Figure 4 left: the mask branch runs on these res5 features
    masks = C4MaskHead(512, num_classes=K)(features)
    assert masks.shape == (3, K, 14, 14)


@pytest.mark.parametrize("class_agnostic", [False, True])
def test_fcn_mask_head_equals_torchvision(class_agnostic: bool) -> None:
    ours = FCNMaskHead(8, conv_dim=16, num_convs=4, num_classes=K, class_agnostic=class_agnostic)
    randomise(ours)
    k_out = 1 if class_agnostic else K
    tv_convs, tv_pred = MaskRCNNHeads(8, (16,) * 4, 1), MaskRCNNPredictor(16, 16, k_out)
    copy_params([ours], [tv_convs, tv_pred])
    x = torch.randn(3, 8, 14, 14)
    out = ours(x)
    assert out.shape == (3, k_out, 28, 28)
    torch.testing.assert_close(out, tv_pred(tv_convs(x)))


@pytest.mark.parametrize("class_agnostic", [False, True])
def test_c4_mask_head_equals_torchvision_predictor(class_agnostic: bool) -> None:
    ours = C4MaskHead(32, num_classes=K, class_agnostic=class_agnostic)
    randomise(ours)
    k_out = 1 if class_agnostic else K
    tv = MaskRCNNPredictor(32, 256, k_out)  # conv5_mask (2×2 deconv, stride 2) + ReLU + mask_fcn_logits
    copy_params([ours], [tv])
    x = torch.randn(2, 32, 7, 7)
    out = ours(x)
    assert out.shape == (2, k_out, 14, 14)
    torch.testing.assert_close(out, tv(x))


@pytest.mark.parametrize("hidden", [(64,), (64, 48)])
@pytest.mark.parametrize("class_agnostic", [False, True])
def test_mlp_mask_head_by_hand(hidden: tuple[int, ...], class_agnostic: bool) -> None:
    """Table 2e's MLP: flatten -> (fc + ReLU) per hidden width -> fc K·m² -> [R, K, m, m], row-major."""
    m = 6
    head = MLPMaskHead(
        4, num_classes=K, resolution=5, hidden=hidden, mask_size=m, class_agnostic=class_agnostic
    )
    randomise(head)
    k_out = 1 if class_agnostic else K
    linears = [layer for layer in head.modules() if isinstance(layer, nn.Linear)]
    assert [fc.out_features for fc in linears] == [*hidden, k_out * m * m]
    x = torch.randn(3, 4, 5, 5)
    h = x.reshape(3, -1)
    for fc in linears[:-1]:
        h = F.linear(h, fc.weight, fc.bias).clamp(min=0)
    flat = F.linear(h, linears[-1].weight, linears[-1].bias)
    out = head(x)
    assert out.shape == (3, k_out, m, m)
    # channel k, pixel (i, j) is output unit k·m² + i·m + j
    k, i, j = k_out - 1, 2, 5
    torch.testing.assert_close(out[:, k, i, j], flat[:, k * m * m + i * m + j])
    torch.testing.assert_close(out, flat.view(3, k_out, m, m))


HEADS = {
    "TwoFCBoxHead": (TwoFCBoxHead, {"resolution": 7, "fc_dim": 32}),
    "Res5BoxHead": (Res5BoxHead, {"res5_out_channels": 8}),
    "BoxPredictor": (BoxPredictor, {}),
    "FCNMaskHead": (FCNMaskHead, {"conv_dim": 16, "num_convs": 2, "class_agnostic": True}),
    "C4MaskHead": (C4MaskHead, {"conv_dim": 16, "class_agnostic": True}),
    "MLPMaskHead": (MLPMaskHead, {"resolution": 5, "hidden": (16,), "mask_size": 6}),
}


@pytest.mark.parametrize("name", list(HEADS))
def test_arguments_after_the_input_are_keyword_only(name: str) -> None:
    """``(input, *, num_classes, <sizes>)``: every head takes its input (channels, or res5) positionally
    and the rest by name, and ``num_classes`` is required (no default)."""
    cls, sizes = HEADS[name]
    first = nn.Identity() if cls is Res5BoxHead else 8
    cls(first, num_classes=K, **sizes)
    with pytest.raises(TypeError, match="positional"):
        cls(first, *sizes.values(), K)
    if sizes:
        with pytest.raises(TypeError, match="num_classes"):
            cls(first, **sizes)


def test_mask_heads_say_how_many_masks_they_predict() -> None:
    x14, x7 = torch.randn(2, 8, 14, 14), torch.randn(2, 8, 7, 7)
    for agnostic, k_out in ((False, K), (True, 1)):
        fcn = FCNMaskHead(8, num_classes=K, conv_dim=16, num_convs=2, class_agnostic=agnostic)
        c4 = C4MaskHead(8, num_classes=K, conv_dim=16, class_agnostic=agnostic)
        mlp = MLPMaskHead(8, num_classes=K, resolution=14, hidden=(16,), mask_size=6, class_agnostic=agnostic)
        assert fcn.num_outputs == c4.num_outputs == mlp.num_outputs == k_out
        assert fcn(x14).shape == (2, k_out, 28, 28) and c4(x7).shape == (2, k_out, 14, 14)
        assert mlp(x14).shape == (2, k_out, 6, 6)


def test_initialisation_detectron() -> None:
    """Predictor N(0, 0.01²) / N(0, 0.001²), zero biases; convs MSRA fill: std sqrt(2 / fan_out)."""
    torch.manual_seed(0)
    p = BoxPredictor(1024, num_classes=81)
    assert abs(p.cls_score.weight.std().item() - 0.01) < 0.0005
    assert abs(p.bbox_pred.weight.std().item() - 0.001) < 0.00005
    assert not p.cls_score.bias.any() and not p.bbox_pred.bias.any()
    head = FCNMaskHead(256, num_classes=81)
    conv = head.convs[2]
    fan_out = conv.out_channels * 9
    assert abs(conv.weight.std().item() - math.sqrt(2 / fan_out)) < 0.02 * math.sqrt(2 / fan_out)
    assert not conv.bias.any()
    assert abs(head.predictor.weight.std().item() - 0.001) < 0.0001

"""Inference (§3): detections, mask selection and mask pasting against torchvision and by hand.

Pasting has two conventions (see ``mrcnn_lite.modeling.postprocess``): ``legacy=True`` must equal
torchvision's ``paste_masks_in_image`` (float rounding aside); the default, continuous one must equal a
per-detection ``F.grid_sample`` (detectron2's formula) and differ from torchvision's only on a one-pixel band
along mask boundaries (torchvision's masks are about a pixel wider and taller: its "+1" box width and the
truncation of box corners to integers).
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torchvision.models.detection.roi_heads import RoIHeads, maskrcnn_inference, paste_masks_in_image

from mrcnn_lite.modeling.box_coder import BoxCoder
from mrcnn_lite.modeling.postprocess import paste_masks, postprocess_detections, select_masks

K = 6  # classes, background included


def clustered_proposals(gen: torch.Generator, n: int, height: int, width: int) -> torch.Tensor:
    """Boxes in a few clusters (so NMS has overlaps to suppress), some sticking out of the image."""
    centres = torch.rand(4, 2, generator=gen) * torch.tensor([width, height])
    c = centres[torch.randint(0, 4, (n,), generator=gen)] + torch.randn(n, 2, generator=gen) * 6
    wh = 10 + torch.rand(n, 2, generator=gen) * 60
    return torch.cat([c - wh / 2, c + wh / 2], dim=1)


@pytest.mark.parametrize(
    "score_thresh, nms_thresh, detections", [(0.05, 0.5, 100), (0.2, 0.3, 15), (0.0, 0.7, 1000)]
)
def test_postprocess_detections_equals_torchvision(
    score_thresh: float, nms_thresh: float, detections: int
) -> None:
    gen = torch.Generator().manual_seed(0)
    sizes = [(120, 160), (90, 100)]
    proposals = [clustered_proposals(gen, 80, *sizes[0]), clustered_proposals(gen, 50, *sizes[1])]
    logits = torch.randn(130, K, generator=gen) * 2
    deltas = torch.randn(130, 4 * K, generator=gen)
    deltas[::7, 2::4] = -12.0  # some decoded boxes collapse to nothing: remove_small_boxes has work
    tv = RoIHeads(
        None, None, None, 0.5, 0.5, 512, 0.25, (10.0, 10.0, 5.0, 5.0), score_thresh, nms_thresh, detections
    )
    tv_boxes, tv_scores, tv_labels = tv.postprocess_detections(logits, deltas, proposals, sizes)
    ours = postprocess_detections(
        logits,
        deltas,
        proposals,
        sizes,
        BoxCoder((10.0, 10.0, 5.0, 5.0)),
        score_thresh,
        nms_thresh,
        detections,
    )
    assert len(ours) == 2
    for det, boxes, scores, labels in zip(ours, tv_boxes, tv_scores, tv_labels, strict=True):
        assert len(det["boxes"]) > 5
        torch.testing.assert_close(det["boxes"], boxes)
        torch.testing.assert_close(det["scores"], scores)
        assert torch.equal(det["labels"], labels)
        assert (det["labels"] > 0).all() and (det["scores"][:-1] >= det["scores"][1:]).all()
    if detections == 15:
        assert len(ours[0]["boxes"]) == 15  # top-k cut


def test_select_masks() -> None:
    gen = torch.Generator().manual_seed(1)
    logits = torch.randn(7, K, 5, 5, generator=gen)
    labels = torch.randint(1, K, (7,), generator=gen)
    (theirs,) = maskrcnn_inference(logits, [labels])
    torch.testing.assert_close(select_masks(logits, labels), theirs)
    # exactly the sigmoid of the predicted class's channel (the notebook 05 check)
    assert torch.equal(select_masks(logits, labels)[:, 0], logits[torch.arange(7), labels].sigmoid())
    # softmax variant: probability of class k among all channels; all-equal logits give 1/K
    soft = select_masks(torch.zeros(2, K, 3, 3), torch.tensor([1, 5]), kind="softmax")
    torch.testing.assert_close(soft, torch.full((2, 1, 3, 3), 1 / K))
    soft = select_masks(logits, labels, kind="softmax")
    torch.testing.assert_close(soft[:, 0], logits.softmax(1)[torch.arange(7), labels])
    # class-agnostic: channel 0, whatever the label
    agnostic = select_masks(logits[:, :1], labels, class_agnostic=True)
    torch.testing.assert_close(agnostic, logits[:, :1].sigmoid())
    with pytest.raises(ValueError, match="class-specific"):
        select_masks(logits[:, :1], labels, kind="softmax", class_agnostic=True)


def blob_masks(gen: torch.Generator, d: int, m: int = 28) -> torch.Tensor:
    """Soft round blobs filling most of the m×m grid, like a trained mask head's probabilities."""
    g = (torch.arange(m) + 0.5) / m * 2 - 1
    radius = 0.7 + 0.3 * torch.rand(d, 1, 1, generator=gen)
    stretch = 0.8 + 0.4 * torch.rand(d, 1, 1, generator=gen)
    r = (g[None, :, None] ** 2 * stretch + g[None, None, :] ** 2 / stretch).sqrt()
    return torch.sigmoid((radius - 1.1 * r) * 12)[:, None]


def random_detections(
    gen: torch.Generator, d: int, height: int, width: int, max_size: float = 250.0
) -> torch.Tensor:
    xy = torch.rand(d, 2, generator=gen) * torch.tensor([width, height]) * 0.8 - 10  # some cross the border
    wh = 3 + torch.rand(d, 2, generator=gen) * max_size
    return torch.cat([xy, xy + wh], dim=1)


def test_paste_masks_legacy_equals_torchvision() -> None:
    gen = torch.Generator().manual_seed(2)
    height, width, d = 300, 400, 40
    masks, boxes = blob_masks(gen, d), random_detections(gen, d, height, width)
    boxes[0] = torch.tensor([5.0, 5.0, 5.2, 5.3])  # a tiny box: one pixel wide after truncation
    theirs = paste_masks_in_image(masks, boxes, (height, width))
    ours = paste_masks(masks, boxes, (height, width), threshold=None, legacy=True)
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=0)
    binary = paste_masks(masks, boxes, (height, width), legacy=True)
    assert binary.dtype == torch.bool
    differ = binary != (theirs > 0.5)
    assert ((theirs[differ] - 0.5).abs() < 1e-5).all()  # only rounding ties at the threshold


def test_paste_masks_under_autocast_equals_float32() -> None:
    """Inference under CPU autocast (bfloat16) pastes in float32: the same masks, bit for bit, as without
    autocast (before, the matrix products ran in bfloat16 and wrote into a float32 buffer: an error)."""
    gen = torch.Generator().manual_seed(7)
    height, width, d = 90, 120, 9
    masks, boxes = blob_masks(gen, d), random_detections(gen, d, height, width)
    want = paste_masks(masks, boxes, (height, width), threshold=None)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = paste_masks(masks, boxes, (height, width), threshold=None)
        binary = paste_masks(masks, boxes, (height, width))
    assert got.dtype == torch.float32 and torch.equal(got, want)
    assert torch.equal(binary, want > 0.5)


def test_paste_masks_equals_grid_sample_reference() -> None:
    """Continuous convention, one detection at a time with ``F.grid_sample`` (detectron2's
    ``_do_paste_mask``): pixel centre x + 0.5 maps to the normalised mask coordinate
    (x + 0.5 - x1) / (x2 - x1) · 2 - 1."""
    gen = torch.Generator().manual_seed(3)
    height, width, d = 120, 150, 12
    masks, boxes = torch.rand(d, 1, 9, 9, generator=gen), random_detections(gen, d, height, width) / 2
    ours = paste_masks(masks, boxes, (height, width), threshold=None)
    ys, xs = torch.arange(height) + 0.5, torch.arange(width) + 0.5
    for i in range(d):
        x1, y1, x2, y2 = boxes[i]
        gx = ((xs - x1) / (x2 - x1) * 2 - 1)[None, :].expand(height, width)
        gy = ((ys - y1) / (y2 - y1) * 2 - 1)[:, None].expand(height, width)
        grid = torch.stack([gx, gy], dim=-1)[None]
        expected = F.grid_sample(masks[i : i + 1], grid, align_corners=False)  # zero padding
        torch.testing.assert_close(ours[i : i + 1], expected, atol=1e-5, rtol=0)


def test_paste_masks_continuous_vs_torchvision_agreement() -> None:
    """The two conventions on realistic masks: >= 99.5% of each image's pixels agree; every disagreement is
    within one pixel of the other convention's mask (a boundary band); masks >= 200 px a side keep IoU >=
    0.98 (a one-pixel band weighs more on small masks: IoU down to ~0.8 at 10 px, ~0.95 at 40 px)."""
    gen = torch.Generator().manual_seed(4)
    height, width, d = 400, 600, 60
    masks, boxes = blob_masks(gen, d), random_detections(gen, d, height, width, max_size=400.0)
    ours = paste_masks(masks, boxes, (height, width))
    theirs = paste_masks_in_image(masks, boxes, (height, width)) > 0.5
    assert ((ours == theirs).float().mean(dim=(1, 2, 3)) >= 0.995).all()
    dilate = lambda x: F.max_pool2d(x.float(), 3, stride=1, padding=1) > 0  # noqa: E731
    assert not (ours & ~dilate(theirs)).any() and not (theirs & ~dilate(ours)).any()
    iou = (ours & theirs).sum(dim=(1, 2, 3)) / (ours | theirs).sum(dim=(1, 2, 3))
    big = (boxes[:, 2:] - boxes[:, :2]).min(dim=1).values >= 200
    assert big.sum() >= 3 and (iou[big] >= 0.98).all()


def test_paste_masks_by_hand() -> None:
    """A 1×1 mask of ones into the box [2, 2, 4, 4] (pixels 2 and 3 on each axis) of a 7×8 image.

    Continuous: pixel x samples mask coordinate s = (x + 0.5 - 2) / 2 - 0.5, weight max(0, 1 - |s|):
    x = 0..5 -> s = -1.25, -0.75, -0.25, 0.25, 0.75, 1.25 -> 0, 1/4, 3/4, 3/4, 1/4, 0. The pasted value is
    w(y)·w(x); above 0.5 only where both are 3/4 (9/16): exactly the box's 2×2 pixels.

    Legacy (torchvision): the mask is padded to 3×3 and the box scaled by 3 about its centre 3: [0, 6] on
    each axis, so pixels 0..6 (7 of them) get the padded mask resized 3 -> 7: padded coordinate
    (u + 0.5)·3/7 - 0.5 = -2/7, 1/7, 4/7, 1, 10/7, 13/7, 16/7, weight of the middle cell 1 - |s - 1| =
    0, 1/7, 4/7, 1, 4/7, 1/7, 0. Above 0.5: 1·1 and 1·4/7, a plus of 5 pixels centred on pixel (3, 3),
    whose centre (3.5, 3.5) is half a pixel right of and below the box's centre (3, 3).
    """
    mask, box = torch.ones(1, 1, 1, 1), torch.tensor([[2.0, 2.0, 4.0, 4.0]])
    w = torch.tensor([0, 1, 3, 3, 1, 0, 0, 0]) / 4
    soft = paste_masks(mask, box, (7, 8), threshold=None)[0, 0]
    torch.testing.assert_close(soft, w[:7, None] * w[None, :])
    expected = torch.zeros(7, 8, dtype=torch.bool)
    expected[2:4, 2:4] = True
    assert torch.equal(paste_masks(mask, box, (7, 8))[0, 0], expected)

    w = torch.tensor([0, 1, 4, 7, 4, 1, 0, 0]) / 7
    soft = paste_masks(mask, box, (7, 8), threshold=None, legacy=True)[0, 0]
    torch.testing.assert_close(soft, w[:7, None] * w[None, :])
    torch.testing.assert_close(paste_masks_in_image(mask, box, (7, 8))[0, 0], w[:7, None] * w[None, :])
    plus = torch.zeros(7, 8, dtype=torch.bool)
    plus[3, 2:5] = plus[2:5, 3] = True
    assert torch.equal(paste_masks(mask, box, (7, 8), legacy=True)[0, 0], plus)


def test_paste_masks_identity_on_pixel_grid() -> None:
    """A box of exactly m × m pixels on pixel boundaries: pixel centre x + 0.5 falls on cell centre
    x - x1 (continuous convention), so the pasted image is the mask itself, zero elsewhere."""
    gen = torch.Generator().manual_seed(5)
    m, x1, y1 = 6, 3, 2
    masks = torch.rand(2, 1, m, m, generator=gen)
    boxes = torch.tensor([[x1, y1, x1 + m, y1 + m], [0, 0, m, m]], dtype=torch.float32)
    out = paste_masks(masks, boxes, (12, 11), threshold=None)
    expected = torch.zeros(2, 1, 12, 11)
    expected[0, :, y1 : y1 + m, x1 : x1 + m] = masks[0]
    expected[1, :, :m, :m] = masks[1]
    torch.testing.assert_close(out, expected)


def test_paste_masks_empty() -> None:
    for legacy in (False, True):
        out = paste_masks(torch.zeros(0, 1, 28, 28), torch.zeros(0, 4), (30, 40), legacy=legacy)
        assert out.shape == (0, 1, 30, 40) and out.dtype == torch.bool


def test_argmax_decoding_keeps_the_pixels_where_the_class_wins() -> None:
    """Table 2b v2: softmax masks decoded by argmax over the K+1 channels (FCN's rule), checked against
    ``argmax`` itself; the 0.5 threshold of the softmax probability is the harsher second line."""
    torch.manual_seed(0)
    logits = torch.randn(6, 7, 5, 5) * 3
    labels = torch.tensor([1, 2, 3, 6, 1, 4])
    argmax = select_masks(logits, labels, "softmax", decode="argmax")
    expected = logits.argmax(dim=1) == labels[:, None, None]
    assert torch.equal(argmax[:, 0] > 0.5, expected)
    threshold = select_masks(logits, labels, "softmax")  # p(k) > 0.5 implies k wins the argmax
    assert bool(((threshold > 0.5) <= (argmax > 0.5)).all())
    assert int((threshold > 0.5).sum()) < int((argmax > 0.5).sum())
    with pytest.raises(ValueError, match="softmax"):
        select_masks(logits, labels, "sigmoid", decode="argmax")
    with pytest.raises(ValueError, match="decode must be"):
        select_masks(logits, labels, "softmax", decode="mode")

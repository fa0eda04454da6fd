"""build_transforms: boxes, masks and image stay consistent; sizes, flips and sanitizing as specified."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torchvision import tv_tensors
from torchvision.ops import masks_to_boxes

from mrcnn_lite.data.coco import CocoDetection
from mrcnn_lite.data.transforms import build_transforms


def tight_boxes(masks: torch.Tensor) -> torch.Tensor:
    """XYXY pixel-edge boxes of binary masks (the independent reference)."""
    return masks_to_boxes(masks) + torch.tensor([0.0, 0.0, 1.0, 1.0])


def plain(t: torch.Tensor) -> torch.Tensor:
    return t.as_subclass(torch.Tensor)


def sample(h: int = 97, w: int = 131, seed: int = 0) -> tuple[tv_tensors.Image, dict]:
    """A random image with three rectangle/ellipse instances whose boxes are the masks' tight boxes."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    masks = torch.stack(
        [
            (xx >= 7) & (xx < 40) & (yy >= 3) & (yy < 30),
            ((xx - 80) / 30) ** 2 + ((yy - 60) / 20) ** 2 <= 1,
            (xx >= w - 20) & (yy >= h - 9),
        ]
    ).to(torch.uint8)
    target = {
        "boxes": tv_tensors.BoundingBoxes(tight_boxes(masks), format="XYXY", canvas_size=(h, w)),
        "labels": torch.tensor([1, 2, 3]),
        "masks": tv_tensors.Mask(masks),
        "image_id": 42,
        "area": masks.sum((1, 2)).float(),
        "iscrowd": torch.zeros(3, dtype=torch.int64),
        "orig_size": (h, w),
        "crowd_boxes": tv_tensors.BoundingBoxes([[1.0, 2.0, 30.0, 40.0]], format="XYXY", canvas_size=(h, w)),
    }
    image = tv_tensors.Image(torch.randint(0, 256, (3, h, w), dtype=torch.uint8, generator=g))
    return image, target


@pytest.mark.parametrize("min_size", [200, (150, 180, 256)])
def test_train_boxes_stay_tight_around_masks(min_size: int | tuple[int, ...]) -> None:
    transform = build_transforms(train=True, min_size=min_size, max_size=1000)
    torch.manual_seed(0)
    flips = 0
    for seed in range(12):
        image, target = transform(*sample(seed=seed))
        torch.testing.assert_close(plain(target["boxes"]), tight_boxes(target["masks"]), rtol=0, atol=1.0)
        assert target["masks"].dtype == torch.uint8 and set(target["masks"].unique().tolist()) == {0, 1}
        flips += bool(target["masks"][2, -1, 0])  # the bottom-right block moved to the left edge
    assert 0 < flips < 12  # flip_prob=0.5 both flips and keeps


@pytest.mark.parametrize(
    ("h", "w", "min_size", "max_size", "expected"),
    [
        (97, 131, 200, 1000, (200, 270)),  # shorter side to min_size: 131 * 200 / 97 = 270.1
        (131, 97, 200, 1000, (270, 200)),
        (40, 200, 100, 300, (60, 300)),  # 500 > 300: longer side capped, shorter 40 * 300 / 200
        (480, 640, 800, 1333, (800, 1066)),  # the paper's setting on a typical COCO image
    ],
)
def test_output_size(h: int, w: int, min_size: int, max_size: int, expected: tuple[int, int]) -> None:
    for train in (True, False):
        image, target = build_transforms(train, min_size, max_size)(*sample(h, w))
        assert tuple(image.shape[-2:]) == expected == target["masks"].shape[-2:]
        assert target["boxes"].canvas_size == expected and target["orig_size"] == (h, w)


def test_multiscale_draws_each_size() -> None:
    transform = build_transforms(train=True, min_size=(100, 120, 140), max_size=1000)
    torch.manual_seed(0)
    shorter = {min(transform(*sample())[0].shape[-2:]) for _ in range(30)}
    assert shorter == {100, 120, 140}


def test_flip_mirrors_x_exactly() -> None:
    flip = build_transforms(train=True, min_size=150, max_size=1000, flip_prob=1.0)
    keep = build_transforms(train=True, min_size=150, max_size=1000, flip_prob=0.0)
    image_f, target_f = flip(*sample())
    image_k, target_k = keep(*sample())
    w = image_k.shape[-1]
    boxes_f, boxes_k = plain(target_f["boxes"]), plain(target_k["boxes"])
    torch.testing.assert_close(boxes_f[:, 0], w - boxes_k[:, 2], rtol=0, atol=0)
    torch.testing.assert_close(boxes_f[:, 2], w - boxes_k[:, 0], rtol=0, atol=0)
    torch.testing.assert_close(boxes_f[:, 1::2], boxes_k[:, 1::2], rtol=0, atol=0)
    assert torch.equal(target_f["masks"], target_k["masks"].flip(-1)) and torch.equal(
        image_f, image_k.flip(-1)
    )
    crowd_f, crowd_k = plain(target_f["crowd_boxes"]), plain(target_k["crowd_boxes"])  # crowds move too
    torch.testing.assert_close(crowd_f[:, [0, 2]], w - crowd_k[:, [2, 0]], rtol=0, atol=0)


def test_image_becomes_float_in_unit_range() -> None:
    image, target = build_transforms(train=False, min_size=97)(*sample())  # no resize: exact scaling
    source, _ = sample()
    assert image.dtype == torch.float32 and isinstance(image, tv_tensors.Image)
    assert 0.0 <= image.min() and image.max() <= 1.0
    torch.testing.assert_close(image, source.float() / 255)
    assert target["masks"].dtype == torch.uint8 and target["labels"].dtype == torch.int64


def test_eval_is_deterministic_and_never_flips() -> None:
    transform = build_transforms(train=False, min_size=(150, 194), max_size=1000)  # eval uses the largest
    reference_image, reference = transform(*sample())
    source = plain(sample()[1]["boxes"])
    torch.testing.assert_close(
        plain(reference["boxes"]), source * 2, rtol=0, atol=1e-4
    )  # 97 -> 194: not mirrored
    for seed in range(10):
        torch.manual_seed(seed)
        image, target = transform(*sample())
        assert torch.equal(image, reference_image) and torch.equal(target["masks"], reference["masks"])
        assert torch.equal(plain(target["boxes"]), plain(reference["boxes"]))


def test_sanitize_drops_degenerate_box_with_its_label_mask_area_iscrowd() -> None:
    image, target = sample()
    target["boxes"][1] = torch.tensor([50.0, 40.0, 50.0, 80.0])  # zero width
    target["iscrowd"][2] = 7  # a marker to follow which entries survive
    target["crowd_boxes"] = tv_tensors.BoundingBoxes(
        [[0.0, 0.0, 5.0, 5.0], [1, 1, 2, 1], [3, 3, 9, 9]], format="XYXY", canvas_size=(97, 131)
    )  # as many crowd boxes as instances, one degenerate: left alone
    out_image, out = build_transforms(train=False, min_size=97)(image, target)
    assert out["labels"].tolist() == [1, 3] and out["iscrowd"].tolist() == [0, 7]
    assert torch.equal(out["masks"], target["masks"][[0, 2]])
    assert torch.equal(out["area"], target["area"][[0, 2]])
    assert torch.equal(plain(out["boxes"]), plain(target["boxes"])[[0, 2]])
    assert out["crowd_boxes"].shape == (3, 4) and out["image_id"] == 42


@pytest.mark.realdata
def test_real_coco_boxes_scale_and_flip_with_the_image(tiny_coco: Path) -> None:
    raw = CocoDetection(tiny_coco, "val2017", train=True)
    flipped = CocoDetection(
        tiny_coco, "val2017", train=True, transforms=build_transforms(True, 320, 400, 1.0)
    )
    for i in (0, 5, 11):
        _, before = raw[i]
        image, after = flipped[i]
        (h, w), (h2, w2) = before["orig_size"], image.shape[-2:]
        assert after["orig_size"] == (h, w)
        assert min(h2, w2) == 320 or max(h2, w2) == 400
        sx, sy = w2 / w, h2 / h
        b = plain(before["boxes"])
        expected = torch.stack([w2 - b[:, 2] * sx, b[:, 1] * sy, w2 - b[:, 0] * sx, b[:, 3] * sy], dim=1)
        expected = torch.minimum(expected.clamp(min=0), torch.tensor([w2, h2, w2, h2]))
        keep = (expected[:, 2] - expected[:, 0] >= 1) & (expected[:, 3] - expected[:, 1] >= 1)
        torch.testing.assert_close(plain(after["boxes"]), expected[keep], rtol=0, atol=1e-3)
        assert after["labels"].tolist() == before["labels"][keep].tolist()
        assert after["masks"].shape == (int(keep.sum()), h2, w2)


@pytest.fixture(scope="module")
def shapes(shapes_small: Path) -> Path:
    """The synthetic shapes dataset (conftest's ``shapes_small``)."""
    return shapes_small


def test_shapes_boxes_tight_after_train_transforms(shapes: Path) -> None:
    ds = CocoDetection(shapes, "train2017", train=True, transforms=build_transforms(True, (288, 320), 480))
    torch.manual_seed(0)
    for i in range(len(ds)):
        image, target = ds[i]
        assert min(image.shape[-2:]) in (288, 320) or max(image.shape[-2:]) == 480
        torch.testing.assert_close(plain(target["boxes"]), tight_boxes(target["masks"]), rtol=0, atol=1.0)

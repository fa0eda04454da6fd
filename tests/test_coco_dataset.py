"""CocoDetection against independent references: the raw JSON, pycocotools' COCO.annToMask and PIL."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from torchvision import tv_tensors
from torchvision.ops import masks_to_boxes

from mrcnn_lite.data.coco import CocoDetection, CocoFormatError, DegenerateAnnotationWarning
from mrcnn_lite.data.masks import encode

SPLITS = ("train2017", "val2017")
CROWD_IMAGES_VAL = (87038, 296649, 329323, 386912, 463730)  # from ../shared/realdata/SOURCES.md


def raw(root: Path, split: str) -> dict:
    return json.loads((root / "annotations" / f"instances_{split}.json").read_text())


def quiet_coco(path: Path) -> COCO:
    import contextlib
    import io

    with contextlib.redirect_stdout(io.StringIO()):
        return COCO(str(path))


def xyxy(bbox: list[float]) -> list[float]:
    x, y, w, h = bbox
    return [x, y, x + w, y + h]


def check_against_raw(root: Path, split: str, ds: CocoDetection, image_ids: list[int]) -> None:
    """Targets of ``image_ids`` equal the raw JSON (boxes, labels, areas) and COCO.annToMask (masks)."""
    data = raw(root, split)
    coco = quiet_coco(ds.ann_file)
    cat_ids = sorted(c["id"] for c in data["categories"])
    for img_id in image_ids:
        image, target = ds[ds.ids.index(img_id)]
        info = next(i for i in data["images"] if i["id"] == img_id)
        anns = [a for a in data["annotations"] if a["image_id"] == img_id]
        inst = [a for a in anns if not a["iscrowd"]]
        crowd = [a for a in anns if a["iscrowd"]]
        h, w = info["height"], info["width"]

        assert isinstance(image, tv_tensors.Image) and image.dtype == torch.uint8 and image.shape == (3, h, w)
        assert isinstance(target["boxes"], tv_tensors.BoundingBoxes) and target["boxes"].canvas_size == (h, w)
        assert isinstance(target["masks"], tv_tensors.Mask) and target["masks"].dtype == torch.uint8
        assert target["image_id"] == img_id and target["orig_size"] == (h, w)
        assert target["boxes"].dtype == torch.float32 and target["boxes"].shape == (len(inst), 4)
        assert target["masks"].shape == (len(inst), h, w)
        expected_boxes = torch.tensor([xyxy(a["bbox"]) for a in inst], dtype=torch.float32).reshape(-1, 4)
        torch.testing.assert_close(target["boxes"].as_subclass(torch.Tensor), expected_boxes, rtol=0, atol=0)
        assert target["labels"].dtype == torch.int64
        assert [cat_ids[label - 1] for label in target["labels"].tolist()] == [a["category_id"] for a in inst]
        for mask, ann in zip(target["masks"], inst, strict=True):
            np.testing.assert_array_equal(mask.numpy(), coco.annToMask(ann))
        assert target["area"].dtype == torch.float32
        torch.testing.assert_close(
            target["area"], torch.tensor([a["area"] for a in inst], dtype=torch.float32)
        )
        assert target["iscrowd"].dtype == torch.int64 and not target["iscrowd"].any()
        assert len(target["iscrowd"]) == len(inst)
        expected_crowd = torch.tensor([xyxy(a["bbox"]) for a in crowd], dtype=torch.float32).reshape(-1, 4)
        torch.testing.assert_close(
            target["crowd_boxes"].as_subclass(torch.Tensor), expected_crowd, rtol=0, atol=0
        )


def assert_masks_inside_boxes(ds: CocoDetection, tol: float = 1.0) -> None:
    for i in range(len(ds)):
        _, target = ds[i]
        if len(target["boxes"]) == 0:
            continue
        tight = masks_to_boxes(target["masks"])
        tight[:, 2:] += 1  # last pixel index -> right/bottom pixel edge
        boxes = target["boxes"].as_subclass(torch.Tensor)
        assert (tight[:, :2] >= boxes[:, :2] - tol).all() and (tight[:, 2:] <= boxes[:, 2:] + tol).all()


# ---------------------------------------------------------------- real COCO (tiny_coco)


@pytest.mark.realdata
@pytest.mark.parametrize("split", SPLITS)
def test_tiny_coco_image_sets(tiny_coco: Path, split: str) -> None:
    data = raw(tiny_coco, split)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the real annotations have nothing degenerate: no warning expected
        every = CocoDetection(tiny_coco, split, train=False)
        train = CocoDetection(tiny_coco, split, train=True)
    assert len(every) == 50 == len(data["images"])
    assert every.ids == sorted(i["id"] for i in data["images"])

    usable = {
        a["image_id"]
        for a in data["annotations"]
        if not a["iscrowd"]
        and a["bbox"][2] > 0
        and a["bbox"][3] > 0
        and (isinstance(a["segmentation"], dict) or any(len(p) >= 6 for p in a["segmentation"]))
    }
    dropped = set(every.ids) - set(train.ids)
    assert set(train.ids) == usable and dropped == {i["id"] for i in data["images"]} - usable
    assert len(dropped) == {"train2017": 1, "val2017": 2}[split]  # SOURCES.md: images with no annotations
    assert "images=50" in repr(every) and f"images={50 - len(dropped)}" in repr(train)


@pytest.mark.realdata
def test_tiny_coco_categories(tiny_coco: Path) -> None:
    ds = CocoDetection(tiny_coco, "val2017")
    cats = sorted(raw(tiny_coco, "val2017")["categories"], key=lambda c: c["id"])
    assert len(ds.cat_ids) == 80 and ds.cat_ids == [c["id"] for c in cats]
    assert ds.class_names == ["__background__"] + [c["name"] for c in cats]
    assert sorted(ds.cat_id_to_label.values()) == list(range(1, 81))
    assert all(ds.label_to_cat_id[ds.cat_id_to_label[c]] == c for c in ds.cat_ids)
    assert ds.cat_id_to_label[90] == 80 and ds.cat_id_to_label[1] == 1 and ds.class_names[80] == "toothbrush"
    assert ds.to_coco_category(torch.arange(1, 81)) == [c["id"] for c in cats]
    assert ds.to_coco_category(torch.tensor([80, 1])) == [90, 1]
    with pytest.raises(ValueError, match="label 0 is not a class label"):
        ds.to_coco_category(torch.tensor([0]))


@pytest.mark.realdata
def test_tiny_coco_targets_match_json_and_annToMask(tiny_coco: Path) -> None:
    val = CocoDetection(tiny_coco, "val2017")
    check_against_raw(tiny_coco, "val2017", val, [397133, 37777, 58636, *CROWD_IMAGES_VAL])
    train = CocoDetection(tiny_coco, "train2017", train=True)
    check_against_raw(tiny_coco, "train2017", train, train.ids[:4] + [391895])


@pytest.mark.realdata
def test_tiny_coco_crowds_only_in_crowd_boxes(tiny_coco: Path) -> None:
    ds = CocoDetection(tiny_coco, "val2017")
    crowd_ids = {a["image_id"] for a in raw(tiny_coco, "val2017")["annotations"] if a["iscrowd"]}
    assert crowd_ids == set(CROWD_IMAGES_VAL)
    for img_id in CROWD_IMAGES_VAL:
        _, target = ds[ds.ids.index(img_id)]
        assert len(target["crowd_boxes"]) >= 1
        assert len(target["boxes"]) == len(target["labels"]) == len(target["masks"])


@pytest.mark.realdata
@pytest.mark.parametrize("split", SPLITS)
def test_tiny_coco_masks_inside_boxes(tiny_coco: Path, split: str) -> None:
    assert_masks_inside_boxes(CocoDetection(tiny_coco, split))


@pytest.mark.realdata
def test_tiny_coco_multipolygon_decodes_every_piece(tiny_coco: Path) -> None:
    data = raw(tiny_coco, "val2017")
    ds = CocoDetection(tiny_coco, "val2017")
    multi = [a for a in data["annotations"] if not a["iscrowd"] and len(a["segmentation"]) > 1]
    assert len(multi) == 22  # SOURCES.md
    for ann in multi[:5]:
        info = next(i for i in data["images"] if i["id"] == ann["image_id"])
        h, w = info["height"], info["width"]
        pieces = [mask_utils.decode(mask_utils.frPyObjects([p], h, w))[..., 0] for p in ann["segmentation"]]
        _, target = ds[ds.ids.index(ann["image_id"])]
        inst = [a for a in data["annotations"] if a["image_id"] == ann["image_id"] and not a["iscrowd"]]
        mask = target["masks"][[a["id"] for a in inst].index(ann["id"])].numpy()
        np.testing.assert_array_equal(mask, np.logical_or.reduce(pieces).astype(np.uint8))
        assert all((mask[p > 0] == 1).all() for p in pieces) and sum(p.any() for p in pieces) >= 2


@pytest.mark.realdata
def test_tiny_coco_images_match_pil(tiny_coco: Path) -> None:
    ds = CocoDetection(tiny_coco, "val2017")
    for i in (0, 17, 49):
        image, target = ds[i]
        info = ds.coco.imgs[target["image_id"]]
        reference = np.asarray(Image.open(tiny_coco / "val2017" / info["file_name"]).convert("RGB"))
        np.testing.assert_array_equal(image.permute(1, 2, 0).numpy(), reference)


@pytest.mark.realdata
def test_tiny_coco_empty_image_has_empty_targets(tiny_coco: Path) -> None:
    ds = CocoDetection(tiny_coco, "val2017")
    _, target = ds[ds.ids.index(58636)]
    h, w = target["orig_size"]
    assert target["boxes"].shape == (0, 4) and target["masks"].shape == (0, h, w)
    assert target["labels"].shape == target["area"].shape == target["iscrowd"].shape == (0,)
    assert target["crowd_boxes"].shape == (0, 4)


# ---------------------------------------------------------------- synthetic shapes


@pytest.fixture(scope="module")
def shapes(shapes_small: Path) -> Path:
    """The synthetic shapes dataset (conftest's ``shapes_small``)."""
    return shapes_small


@pytest.mark.parametrize("split", SPLITS)
def test_shapes_loads_and_matches_json(shapes: Path, split: str) -> None:
    data = raw(shapes, split)
    ds = CocoDetection(shapes, split, train=False)
    assert len(ds) == {"train2017": 12, "val2017": 6}[split] == len(data["images"])
    ids = sorted(c["id"] for c in data["categories"])
    assert ds.cat_ids == ids and ids != list(range(1, len(ids) + 1))  # non-contiguous in the JSON
    assert [ds.cat_id_to_label[c] for c in ids] == list(range(1, len(ids) + 1))
    assert ds.to_coco_category(torch.arange(1, len(ids) + 1)) == ids
    check_against_raw(shapes, split, ds, ds.ids)
    for i in range(len(ds)):  # the generator's boxes are pycocotools' tight boxes of the stored masks
        _, target = ds[i]
        tight = masks_to_boxes(target["masks"]) + torch.tensor([0, 0, 1, 1])
        torch.testing.assert_close(target["boxes"].as_subclass(torch.Tensor), tight, rtol=0, atol=0)


def test_shapes_train_drops_only_unusable_images(shapes: Path) -> None:
    data = raw(shapes, "train2017")
    usable = {a["image_id"] for a in data["annotations"] if not a.get("iscrowd", 0)}
    assert set(CocoDetection(shapes, "train2017", train=True).ids) == usable


# ---------------------------------------------------------------- bad inputs (hand-made files)


def write_dataset(root: Path, annotations: list[dict], images: list[dict] | None = None, **extra) -> Path:
    """A val2017 split of two 40x50 PNG images; returns the annotation file."""
    images = images or [
        {"id": 1, "file_name": "a.png", "height": 40, "width": 50},
        {"id": 2, "file_name": "b.png", "height": 40, "width": 50},
    ]
    (root / "val2017").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for info in images:
        pixels = rng.integers(0, 256, (info["height"], info["width"], 3), dtype=np.uint8)
        Image.fromarray(pixels).save(root / "val2017" / info["file_name"])
    categories = [{"id": 3, "name": "square", "supercategory": "shape"}, {"id": 7, "name": "disc"}]
    data = {"images": images, "annotations": annotations, "categories": categories, **extra}
    ann_file = root / "annotations" / "instances_val2017.json"
    ann_file.parent.mkdir(parents=True, exist_ok=True)
    ann_file.write_text(json.dumps(data))
    return ann_file


def square(ann_id: int, image_id: int = 1, cat: int = 3, x: int = 5, y: int = 6, s: int = 10, **kw) -> dict:
    poly = [x, y, x + s, y, x + s, y + s, x, y + s]
    ann = {"id": ann_id, "image_id": image_id, "category_id": cat, "bbox": [x, y, s, s]}
    return {**ann, "segmentation": [poly], "area": float(s * s), "iscrowd": 0, **kw}


def test_missing_annotation_file_names_path_and_how_to_get_it(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"elsewhere/annotations/instances_val2017\.json") as err:
        CocoDetection(tmp_path / "elsewhere")
    assert "Data sets live under data/" in str(err.value)  # any other folder: both ways to get data
    with pytest.raises(FileNotFoundError, match=r"python -m mrcnn_lite\.data\.shapes --out data/shapes"):
        CocoDetection(tmp_path / "data" / "shapes", "train2017")
    with pytest.raises(FileNotFoundError, match=r"instances_train2017\.json.*data/coco/"):
        CocoDetection(tmp_path / "data" / "coco", "train2017")


def test_malformed_json_names_file_and_position(tmp_path: Path) -> None:
    ann_file = write_dataset(tmp_path, [square(1)])
    text = ann_file.read_text()
    ann_file.write_text(text[: len(text) // 2])
    with pytest.raises(
        CocoFormatError, match=r"instances_val2017\.json: not valid JSON \(.* line 1 column \d+"
    ):
        CocoDetection(tmp_path)


def test_missing_annotations_field(tmp_path: Path) -> None:
    ann_file = write_dataset(tmp_path, [])
    data = json.loads(ann_file.read_text())
    del data["annotations"]
    ann_file.write_text(json.dumps(data))
    with pytest.raises(
        CocoFormatError, match=r"instances_val2017\.json: missing required top-level field 'annotations'"
    ):
        CocoDetection(tmp_path)


def test_missing_annotation_field(tmp_path: Path) -> None:
    ann = square(7)
    del ann["bbox"]
    write_dataset(tmp_path, [square(1), ann])
    with pytest.raises(
        CocoFormatError, match=r"instances_val2017\.json: annotations entry id 7 .* field 'bbox'"
    ):
        CocoDetection(tmp_path)


def test_unknown_category(tmp_path: Path) -> None:
    write_dataset(tmp_path, [square(1), square(12, cat=5)])
    with pytest.raises(CocoFormatError, match=r"instances_val2017\.json: annotation 12 has category id 5"):
        CocoDetection(tmp_path)


def test_missing_image_file(tmp_path: Path) -> None:
    write_dataset(tmp_path, [square(1)])
    (tmp_path / "val2017" / "b.png").unlink()
    ds = CocoDetection(tmp_path)  # file existence is checked when the image is read
    ds[0]
    with pytest.raises(FileNotFoundError, match=r"val2017/b\.png: image file of image id 2"):
        ds[1]


def test_image_size_must_match_json(tmp_path: Path) -> None:
    write_dataset(tmp_path, [square(1)])
    Image.new("RGB", (50, 41)).save(tmp_path / "val2017" / "a.png")
    with pytest.raises(CocoFormatError, match=r"a\.png: image is \(41, 50\)"):
        CocoDetection(tmp_path)[0]


def test_degenerate_annotations_skipped_with_one_summary_warning(tmp_path: Path) -> None:
    empty_rle = encode(np.zeros((40, 50), np.uint8))
    anns = [
        square(1),
        square(2, x=0, s=0),  # zero-area box
        {**square(3), "segmentation": [[5, 6, 15, 6]]},  # a 2-point "polygon"
        {**square(4), "segmentation": empty_rle},
        square(5, image_id=2, cat=7),
    ]
    write_dataset(tmp_path, anns)
    with pytest.warns(DegenerateAnnotationWarning) as record:
        ds = CocoDetection(tmp_path, train=True)
    assert len(record) == 1
    message = str(record[0].message)
    assert message.startswith("instances_val2017.json: skipped 3 degenerate annotations (")
    for part in ("1 zero-area box", "1 polygon with <3 points", "1 empty RLE"):
        assert part in message
    _, target = ds[0]
    assert target["labels"].tolist() == [1] and target["boxes"].tolist() == [[5, 6, 15, 16]]
    _, target = ds[1]
    assert target["labels"].tolist() == [2]


def test_short_polygon_piece_dropped_and_reported(tmp_path: Path) -> None:
    ann = square(1)
    ann["segmentation"] = ann["segmentation"] + [[30, 30, 35, 35]]
    write_dataset(tmp_path, [ann])
    with pytest.warns(
        DegenerateAnnotationWarning, match=r"^instances_val2017\.json: dropped 1 polygon pieces"
    ):
        ds = CocoDetection(tmp_path)
    _, target = ds[0]
    expected = np.zeros((40, 50), np.uint8)
    expected[6:16, 5:15] = 1  # the square alone, not the 2-point piece read as a box
    np.testing.assert_array_equal(target["masks"][0].numpy(), expected)


def test_polygon_that_covers_no_pixel_is_dropped_at_getitem(tmp_path: Path) -> None:
    sliver = {
        **square(2),
        "segmentation": [[20.2, 20.2, 20.4, 20.2, 20.3, 20.4]],
        "bbox": [20.2, 20.2, 0.2, 0.2],
    }
    write_dataset(tmp_path, [square(1), sliver])
    ds = CocoDetection(tmp_path)
    with pytest.warns(DegenerateAnnotationWarning, match="annotation 2 of image 1 decodes to an empty mask"):
        _, target = ds[0]
    assert target["labels"].tolist() == [1] and target["masks"].shape == (1, 40, 50)


def test_no_usable_image_for_training(tmp_path: Path) -> None:
    crowd = {**square(1), "iscrowd": 1, "segmentation": encode(np.ones((40, 50), np.uint8))}
    write_dataset(tmp_path, [crowd])
    with pytest.raises(CocoFormatError, match=r"instances_val2017\.json: no image has a usable"):
        CocoDetection(tmp_path, train=True)
    ds = CocoDetection(tmp_path, train=False)
    _, target = ds[0]
    assert (
        len(ds) == 2
        and target["boxes"].shape == (0, 4)
        and target["crowd_boxes"].tolist() == [[5, 6, 15, 16]]
    )


def test_uncompressed_rle_crowd_and_custom_paths(tmp_path: Path) -> None:
    mask = np.zeros((40, 50), np.uint8)
    mask[2:9, 30:44] = 1
    uncompressed = {"size": [40, 50], "counts": _uncompressed_counts(mask)}
    assert mask_utils.decode(mask_utils.frPyObjects(uncompressed, 40, 50)).sum() == mask.sum()
    anns = [square(1), {**square(2), "segmentation": uncompressed, "bbox": [30, 2, 14, 7], "iscrowd": 1}]
    ann_file = write_dataset(tmp_path / "elsewhere", anns, type="instances", info={"url": "http:\\/\\/x"})
    ds = CocoDetection(tmp_path, ann_file=ann_file, image_dir=tmp_path / "elsewhere" / "val2017")
    _, target = ds[0]
    assert target["crowd_boxes"].tolist() == [[30, 2, 44, 9]] and len(target["boxes"]) == 1


def _uncompressed_counts(mask: np.ndarray) -> list[int]:
    """Column-major run lengths starting with a run of zeros, as COCO's crowd annotations store them."""
    flat = mask.flatten(order="F")
    changes = np.flatnonzero(np.diff(flat)) + 1
    edges = np.concatenate([[0], changes, [flat.size]])
    runs = np.diff(edges).tolist()
    return runs if flat[0] == 0 else [0, *runs]


@pytest.mark.parametrize("mode", ["L", "RGBA"])
def test_grayscale_and_rgba_become_rgb(tmp_path: Path, mode: str) -> None:
    write_dataset(tmp_path, [square(1)])
    rng = np.random.default_rng(1)
    shape = (40, 50) if mode == "L" else (40, 50, 4)
    path = tmp_path / "val2017" / "a.png"
    Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8)).save(path)
    assert Image.open(path).mode == mode
    image, _ = CocoDetection(tmp_path)[0]
    reference = np.asarray(Image.open(path).convert("RGB"))
    assert image.shape == (3, 40, 50)
    np.testing.assert_array_equal(image.permute(1, 2, 0).numpy(), reference)


def test_every_kind_of_degenerate_annotation_is_skipped_and_counted(tmp_path: Path) -> None:
    """The hand-written file of tests/data/degenerate_gt (each annotation's "note" says what is wrong):
    training skips exactly the unusable ones, with one warning that counts them by reason (a wrong
    segmentation type, a NaN box or an RLE of the wrong size used to be fatal)."""
    src = Path(__file__).parent / "data" / "degenerate_gt" / "instances_val2017.json"
    (tmp_path / "annotations").mkdir()
    (tmp_path / "annotations" / "instances_val2017.json").write_text(src.read_text())
    (tmp_path / "val2017").mkdir()
    for name in ("a.png", "b.png", "c.png"):
        Image.new("RGB", (50, 40)).save(tmp_path / "val2017" / name)
    with pytest.warns(DegenerateAnnotationWarning) as record:
        ds = CocoDetection(tmp_path, train=True)
    assert [str(w.message) for w in record] == [
        "instances_val2017.json: skipped 11 degenerate annotations (3 polygons with <3 points, 1 polygon "
        "with an odd number of coordinates, 1 zero-area box, 1 box with a negative width or height, 1 empty "
        "RLE, 1 box that is not 4 finite numbers, 1 segmentation that is neither polygons nor RLE, 1 RLE of "
        "another size than its image, 1 area that is not a finite number); dropped 1 polygon pieces with <3 "
        "points from kept annotations"
    ]
    kept = {i: [a["id"] for a in ds._instances.get(i, [])] for i in ds.ids}
    assert kept == {1: [1, 2], 2: [3], 3: [15, 17, 18]} and ds._crowds == {2: [ds.coco.anns[16]]}
    with pytest.warns(DegenerateAnnotationWarning, match="annotation 15 of image 3 decodes to an empty mask"):
        _, target = ds[2]  # the sliver is only found empty when rasterised
    assert target["labels"].tolist() == [2, 1]
    expected = np.zeros((40, 50), np.uint8)
    expected[20:30, 5:15] = 1  # 17 without its 2-point first piece (pycocotools would read it as a box)
    np.testing.assert_array_equal(target["masks"][0].numpy(), expected)

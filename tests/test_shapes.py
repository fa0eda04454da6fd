"""The synthetic shapes dataset: COCO format, consistency with pycocotools, determinism, files."""

from __future__ import annotations

import hashlib
import itertools
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

from mrcnn_lite.data import shapes

SPLITS = ("train2017", "val2017")


def _hashes(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def _load(root: Path, split: str) -> COCO:
    return COCO(str(root / "annotations" / f"instances_{split}.json"))


def _erode(mask: np.ndarray) -> np.ndarray:
    h, w = mask.shape
    padded = np.pad(mask, 1)
    return np.logical_and.reduce([padded[dy : dy + h, dx : dx + w] for dy in range(3) for dx in range(3)])


@pytest.fixture(scope="module")
def cocos(shapes_small: Path) -> dict[str, COCO]:
    return {split: _load(shapes_small, split) for split in SPLITS}


def test_same_seed_gives_identical_files_and_other_seed_differs(shapes_small, tmp_path):
    again = tmp_path / "again"
    shapes.generate(again, seed=0, num_train=12, num_val=6)
    reference = _hashes(shapes_small)
    assert len(reference) == 12 + 6 + 2
    assert _hashes(again) == reference
    other = tmp_path / "other"
    shapes.generate(other, seed=1, num_train=12, num_val=6)
    hashes = _hashes(other)
    assert hashes.keys() == reference.keys()  # same file names ...
    assert all(hashes[k] != reference[k] for k in reference)  # ... different content, every one


def test_images_are_independent_of_the_run_size(shapes_small, tmp_path):
    # Each image has its own seed, so a smaller run is a prefix of a larger one.
    shapes.generate(tmp_path, seed=0, num_train=3, num_val=2)
    small, big = _hashes(tmp_path), _hashes(shapes_small)
    images = [k for k in small if k.endswith(".jpg")]
    assert len(images) == 5
    assert all(small[k] == big[k] for k in images)


def test_json_layout(shapes_small):
    for split in SPLITS:
        doc = json.loads((shapes_small / "annotations" / f"instances_{split}.json").read_text())
        assert list(doc) == ["info", "licenses", "images", "annotations", "categories"]
        gen = doc["info"]["generator"]
        assert (gen["seed"], gen["num_train"], gen["num_val"]) == (0, 12, 6)
        assert gen["version"] == shapes.GENERATOR_VERSION
        license_ids = {lic["id"] for lic in doc["licenses"]}
        for img in doc["images"]:
            assert {"id", "file_name", "width", "height", "license"} <= img.keys()
            assert img["license"] in license_ids
        for ann in doc["annotations"]:
            assert set(ann) == {"id", "image_id", "category_id", "segmentation", "area", "bbox", "iscrowd"}


def test_ids_unique_and_splits_disjoint(cocos):
    image_ids = {split: set(c.getImgIds()) for split, c in cocos.items()}
    ann_ids = {split: [a["id"] for a in c.dataset["annotations"]] for split, c in cocos.items()}
    assert len(image_ids["train2017"]) == 12 and len(image_ids["val2017"]) == 6
    assert not image_ids["train2017"] & image_ids["val2017"]
    for ids in ann_ids.values():
        assert len(ids) == len(set(ids))
    assert not set(ann_ids["train2017"]) & set(ann_ids["val2017"])
    # Ids are not 0..n-1 (code must not use them as list indices).
    assert sorted(image_ids["train2017"]) != list(range(12)) and sorted(image_ids["train2017"]) != list(
        range(1, 13)
    )


def test_every_annotation_decodes_with_consistent_area_and_box(cocos):
    for coco in cocos.values():
        for ann in coco.dataset["annotations"]:
            img = coco.imgs[ann["image_id"]]
            h, w = img["height"], img["width"]
            mask = coco.annToMask(ann)
            assert mask.shape == (h, w)
            rle = coco.annToRLE(ann)
            assert ann["area"] == float(mask_utils.area(rle)) == float(mask.sum()) > 0
            assert ann["bbox"] == [float(v) for v in mask_utils.toBbox(rle)]
            ys, xs = np.nonzero(mask)  # the box is the tight box of the decoded pixels
            assert ann["bbox"] == [xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1]
            x, y, bw, bh = ann["bbox"]
            assert 0 <= x and 0 <= y and x + bw <= w and y + bh <= h


def test_categories_non_contiguous_and_all_used(cocos):
    expected = [c["id"] for c in shapes.CATEGORIES]
    assert len(expected) >= 5 and len(set(expected)) == len(expected)
    assert expected != list(range(1, len(expected) + 1))  # gaps, as in COCO
    assert len({c["name"] for c in shapes.CATEGORIES}) == len(expected)
    for coco in cocos.values():
        assert sorted(coco.getCatIds()) == sorted(expected)
        assert coco.dataset["categories"] == shapes.CATEGORIES
        assert {a["category_id"] for a in coco.dataset["annotations"]} <= set(expected)
    train_used = {a["category_id"] for a in cocos["train2017"].dataset["annotations"] if not a["iscrowd"]}
    assert train_used == set(expected)


def test_segmentation_kinds_and_sizes_present(cocos):
    for split, coco in cocos.items():
        anns = coco.dataset["annotations"]
        plain = [a for a in anns if not a["iscrowd"]]
        polygons = [a for a in plain if isinstance(a["segmentation"], list)]
        rles = [a for a in plain if isinstance(a["segmentation"], dict)]
        crowd = [a for a in anns if a["iscrowd"]]
        assert polygons and rles and crowd, split
        for a in polygons:
            assert all(len(p) >= 6 and len(p) % 2 == 0 for p in a["segmentation"])
        assert all(isinstance(a["segmentation"]["counts"], str) for a in rles)
        assert all(isinstance(a["segmentation"]["counts"], list) for a in crowd)  # uncompressed, like COCO
        areas = np.array([a["area"] for a in plain])
        assert (areas < 32**2).any() and ((areas >= 32**2) & (areas < 96**2)).any() and (areas >= 96**2).any()
    train = cocos["train2017"].dataset["annotations"]
    assert any(isinstance(a["segmentation"], list) and len(a["segmentation"]) > 1 for a in train)


def test_images_exist_with_json_sizes_and_some_are_empty(shapes_small, cocos):
    for split, coco in cocos.items():
        sizes = set()
        for img in coco.dataset["images"]:
            assert img["file_name"] == f"{img['id']:012d}.jpg"
            with Image.open(shapes_small / split / img["file_name"]) as im:
                assert im.format == "JPEG" and im.mode == "RGB"
                assert im.size == (img["width"], img["height"])
            lo, hi = shapes.IMAGE_SIZE_RANGE
            assert lo <= img["width"] <= hi and lo <= img["height"] <= hi
            sizes.add(im.size)
        assert len(sizes) > 1  # sizes vary
        assert len(list((shapes_small / split).iterdir())) == len(coco.dataset["images"])
        assert any(not coco.getAnnIds(imgIds=i) for i in coco.getImgIds()), f"{split}: no empty image"


def test_visible_masks_do_not_overlap(cocos):
    # Each annotation is the visible part of its shape, so masks are disjoint. Polygons decode to the
    # visible mask up to boundary pixels, so where a polygon is involved only boundary pixels may overlap.
    checked_rle_pairs = 0
    for coco in cocos.values():
        for img_id in coco.getImgIds():
            anns = coco.loadAnns(coco.getAnnIds(imgIds=img_id))
            decoded = [(a, coco.annToMask(a).astype(bool)) for a in anns]
            for (a, ma), (b, mb) in itertools.combinations(decoded, 2):
                overlap = ma & mb
                if isinstance(a["segmentation"], dict) and isinstance(b["segmentation"], dict):
                    assert not overlap.any(), (a["id"], b["id"])
                    checked_rle_pairs += 1
                else:
                    boundary = (ma & ~_erode(ma)) | (mb & ~_erode(mb))
                    assert not (overlap & ~boundary).any(), (a["id"], b["id"])
                    assert overlap.sum() <= 0.1 * min(ma.sum(), mb.sum())
    assert checked_rle_pairs > 0


def test_size_distribution_on_a_larger_run(tmp_path):
    summary = shapes.generate(tmp_path, seed=5, num_train=150, num_val=60)
    for split in SPLITS:
        coco = _load(tmp_path, split)
        areas = np.array([a["area"] for a in coco.dataset["annotations"] if not a["iscrowd"]])
        sizes = [(areas < 32**2).sum(), ((areas >= 32**2) & (areas < 96**2)).sum(), (areas >= 96**2).sum()]
        assert min(sizes) >= 0.12 * len(areas), (split, sizes)
        counts = summary[split]
        assert counts["images"] == len(coco.dataset["images"])
        assert counts["annotations"] == len(coco.dataset["annotations"])
        assert [counts["small"], counts["medium"], counts["large"]] == sizes
        assert counts["polygon"] + counts["rle"] == len(areas)
        assert counts["crowd"] == sum(a["iscrowd"] for a in coco.dataset["annotations"])


def test_rerun_with_fewer_images_removes_stale_files(tmp_path):
    shapes.generate(tmp_path / "a", seed=2, num_train=6, num_val=3)
    (tmp_path / "a" / "train2017" / ".000000000004.jpg.999.tmp").write_bytes(b"left by a killed run")
    (tmp_path / "a" / "train2017" / "notes.txt").write_text("not ours: kept")
    shapes.generate(tmp_path / "a", seed=2, num_train=2, num_val=1)
    shapes.generate(tmp_path / "fresh", seed=2, num_train=2, num_val=1)
    (tmp_path / "a" / "train2017" / "notes.txt").unlink()
    assert _hashes(tmp_path / "a") == _hashes(tmp_path / "fresh")  # no stale images, no temp files


def test_interrupted_run_leaves_no_annotation_files(tmp_path, monkeypatch):
    shapes.generate(tmp_path, seed=0, num_train=3, num_val=2)
    real = shapes.make_image

    def failing(seed, split_index, index):
        if split_index == 1:
            raise KeyboardInterrupt
        return real(seed, split_index, index)

    monkeypatch.setattr(shapes, "make_image", failing)
    with pytest.raises(KeyboardInterrupt):
        shapes.generate(tmp_path, seed=1, num_train=3, num_val=2)
    assert not list((tmp_path / "annotations").iterdir())
    assert not [p for p in tmp_path.rglob("*") if p.name.startswith(".")]


@pytest.mark.parametrize(
    "kwargs", [{"num_train": -1}, {"num_val": -3}, {"num_train": 2.5}, {"seed": -1}, {"seed": "0"}]
)
def test_bad_arguments_raise(tmp_path, kwargs):
    with pytest.raises(ValueError):
        shapes.generate(tmp_path, **kwargs)


def test_cli(tmp_path, capsys):
    out = tmp_path / "cli"
    summary = shapes.main(["--out", str(out), "--seed", "3", "--num-train", "4", "--num-val", "2", "--quiet"])
    printed = capsys.readouterr().out
    assert "train2017" in printed and "val2017" in printed and "large" in printed
    assert summary["train2017"]["images"] == 4 and summary["val2017"]["images"] == 2
    assert len(list((out / "train2017").glob("*.jpg"))) == 4
    assert _load(out, "val2017").dataset["info"]["generator"]["seed"] == 3
    with pytest.raises(SystemExit):
        shapes.main(["--out", str(out), "--num-train", "-1"])
    with pytest.raises(SystemExit) as exc:
        shapes.main(["--help"])
    assert exc.value.code == 0
    assert "--num-train" in capsys.readouterr().out

"""Shared fixtures: where the real-data fixtures live, and a small synthetic dataset."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
# CI lays ../shared beside the clone; a user can point elsewhere with MRCNN_LITE_SHARED.
SHARED = Path(os.environ.get("MRCNN_LITE_SHARED", REPO.parent / "shared"))
REALDATA = SHARED / "realdata"


def _realdata_dir(name: str) -> Path:
    path = REALDATA / name
    if not path.is_dir():
        pytest.skip(
            f"{path} is absent: this test reads real COCO files that CI keeps in ../shared/realdata "
            "(set MRCNN_LITE_SHARED to the folder that holds realdata/ to run it)"
        )
    return path


@pytest.fixture(scope="session")
def tiny_coco() -> Path:
    """Real COCO 2017 subset: 50 train2017 + 50 val2017 images with their original annotations."""
    return _realdata_dir("tiny_coco")


@pytest.fixture(scope="session")
def cocoapi_fake100() -> Path:
    """pycocotools' own demo: val2014 annotations of 100 images and the official fake results."""
    return _realdata_dir("cocoapi_fake100")


@pytest.fixture(scope="session")
def shapes_small(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small synthetic COCO-format dataset (12 train, 6 val images), generated once per test session."""
    from mrcnn_lite.data.shapes import generate

    out = tmp_path_factory.mktemp("shapes_small")
    generate(out, seed=0, num_train=12, num_val=6)
    return out


@pytest.fixture(scope="module")
def one_thread():
    """One intra-op thread for a module (``pytestmark = pytest.mark.usefixtures("one_thread")``): faster on
    tiny tensors, and immune to OpenMP spin-waits (10-50x slower runs) when another process keeps the other
    core busy."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)

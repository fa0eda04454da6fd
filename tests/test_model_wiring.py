"""``build_model`` wires what the config names, for every preset and every Table 2 variant (§3.1, Table 2).

:mod:`wiring` (a helper beside this file) holds the expectations; here they run on every case, and the
meta-tests break ``build.py`` in one place at a time (it ignores ``roi_op``, swaps the MLP heads, ...) and
require the check to fail on the case that shows the breakage.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from wiring import CASES, build_on_meta, check_wiring  # tests/ is on sys.path (pytest prepends it)

from mrcnn_lite.config import get_config
from mrcnn_lite.modeling import build
from mrcnn_lite.modeling.mask_head import FCNMaskHead
from mrcnn_lite.modeling.poolers import RoIFeatureExtractor


@pytest.mark.parametrize("case", list(CASES))
def test_build_model_wires_what_the_config_names(case: str) -> None:
    preset, overrides = CASES[case]
    cfg = get_config(preset, list(overrides))
    check_wiring(cfg, build_on_meta(cfg))


def test_the_cases_cover_every_table2_choice() -> None:
    """Every value of every Table 2 choice appears among the cases, so a builder that ignores one fails."""
    seen: dict[str, set[Any]] = {}
    for preset, overrides in CASES.values():
        m = get_config(preset, list(overrides)).model
        for key in ("arch", "backbone", "roi_op", "roi_mode", "roi_aligned", "mask_head", "mask_loss"):
            seen.setdefault(key, set()).add(getattr(m, key))
        seen.setdefault("agnostic", set()).add((m.arch, m.class_agnostic_masks))
        seen.setdefault("with_mask", set()).add((m.arch, m.with_mask))
    assert seen["arch"] == {"c4", "c5", "fpn"} and seen["mask_loss"] == {"sigmoid", "softmax"}
    assert seen["roi_op"] == {"roi_pool", "roi_warp", "roi_warp_mnc", "roi_align"}
    assert seen["roi_mode"] == {"avg", "max"}
    assert seen["roi_aligned"] == {True, False} and seen["mask_head"] == {"fcn", "mlp1", "mlp2"}
    assert {"resnet18", "resnet34", "resnet50", "resnet101"} <= seen["backbone"]
    both = {(arch, flag) for arch in ("c4", "fpn") for flag in (True, False)}
    assert both <= seen["agnostic"] and both <= seen["with_mask"]


# ------------------------------------------------------------------------------------ broken wiring
def _drop(*names: str) -> Callable[[pytest.MonkeyPatch], None]:
    """A ``build.py`` whose poolers ignore the config's ``names`` (the pooler's defaults instead)."""

    def patch(monkeypatch: pytest.MonkeyPatch) -> None:
        def pooler(*args: Any, **kwargs: Any) -> RoIFeatureExtractor:
            return RoIFeatureExtractor(*args, **{k: v for k, v in kwargs.items() if k not in names})

        monkeypatch.setattr(build, "RoIFeatureExtractor", pooler)

    return patch


def _swap_mlp_heads(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(build, "MLP_LAYERS", {"mlp1": 2, "mlp2": 1})


def _class_specific_only(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("C4MaskHead", "FCNMaskHead", "MLPMaskHead"):
        cls = getattr(build, name)
        monkeypatch.setattr(
            build, name, lambda *a, _cls=cls, **kw: _cls(*a, **{**kw, "class_agnostic": False})
        )


def _sigmoid_only(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = build._roi_settings
    monkeypatch.setattr(build, "_roi_settings", lambda m: {**settings(m), "mask_loss": "sigmoid"})


def _fcn_for_every_mask_head(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(build, "mask_head_kind", lambda m: "fcn")


def _fcn_head_for_c4(monkeypatch: pytest.MonkeyPatch) -> None:
    """The C4 mask head swapped for the FCN head of 3×3 convs (what 'fcn' means without C4)."""
    monkeypatch.setattr(
        build,
        "C4MaskHead",
        lambda c, *, num_classes, conv_dim, class_agnostic: FCNMaskHead(
            c, num_classes=num_classes, conv_dim=conv_dim, num_convs=0, class_agnostic=class_agnostic
        ),
    )


BREAKAGES: dict[str, tuple[Callable[[pytest.MonkeyPatch], None], str]] = {
    "ignores roi_op and roi_mode": (_drop("op", "mode"), "table2 c4_roipool"),
    "ignores roi_mode": (_drop("mode"), "table2 c4_roialign_max"),
    "ignores roi_aligned": (_drop("aligned"), "c4 unaligned"),
    "ignores roi_sampling_ratio": (_drop("sampling_ratio"), "c4 sampling 0"),
    "swaps the MLP heads": (_swap_mlp_heads, "table2 fpn_mlp1"),
    "ignores class_agnostic_masks": (_class_specific_only, "table2 c4_agnostic"),
    "ignores mask_loss": (_sigmoid_only, "table2 c4_softmax"),
    "builds the FCN head for mlp1": (_fcn_for_every_mask_head, "table2 fpn_mlp1"),
    "builds a conv head for C4": (_fcn_head_for_c4, "preset classroom_c4"),
}


@pytest.mark.parametrize("breakage", list(BREAKAGES))
def test_check_wiring_fails_on_broken_wiring(breakage: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Meta-test: with ``build.py`` broken in one place, ``check_wiring`` fails on the case that shows it
    (and, unbroken, the same case passes: ``test_build_model_wires_what_the_config_names``)."""
    patch, case = BREAKAGES[breakage]
    preset, overrides = CASES[case]
    cfg = get_config(preset, list(overrides))
    patch(monkeypatch)
    with pytest.raises(AssertionError):
        check_wiring(cfg, build_on_meta(cfg))

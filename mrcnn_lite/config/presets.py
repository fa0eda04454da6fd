"""The preset registry: every named config, by name.

- ``PRESETS``: the starting points offered to users (the CLI's ``--config``, the notebooks' tables): the
  classroom models (:mod:`.classroom`) and the paper's COCO recipes (:mod:`.coco`);
- ``TABLE2_PRESETS``: the recipes of the Table 2 reproductions (:mod:`.table2`), resolvable by name like any
  preset.

A preset is frozen once a committed result uses it (``tests/test_presets_frozen.py`` holds a snapshot of
each): a retuned recipe is a new preset, so every recorded run still names what it trained.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable

from mrcnn_lite.config.classroom import classroom_c4, classroom_c5, classroom_fpn, classroom_fpn_pretrained
from mrcnn_lite.config.coco import coco_r50_c4, coco_r50_fpn, coco_r101_fpn, coco_x101_fpn
from mrcnn_lite.config.schema import Config, ConfigError
from mrcnn_lite.config.table2 import (
    table2_c4,
    table2_c5,
    table2_fpn,
    table2_trunk,
    table2v2_c4,
    table2v2_c5,
    table2v2_fpn,
)
from mrcnn_lite.config.validation import validate

PRESETS: dict[str, Callable[[], Config]] = {
    "classroom_fpn": classroom_fpn,
    "classroom_fpn_pretrained": classroom_fpn_pretrained,
    "classroom_c4": classroom_c4,
    "classroom_c5": classroom_c5,
    "coco_r50_c4": coco_r50_c4,
    "coco_r50_fpn": coco_r50_fpn,
    "coco_r101_fpn": coco_r101_fpn,
    "coco_x101_fpn": coco_x101_fpn,
}
TABLE2_PRESETS: dict[str, Callable[[], Config]] = {
    "table2_trunk": table2_trunk,
    "table2_c4": table2_c4,
    "table2_c5": table2_c5,
    "table2_fpn": table2_fpn,
    "table2v2_c4": table2v2_c4,
    "table2v2_c5": table2v2_c5,
    "table2v2_fpn": table2v2_fpn,
}
#: every preset ``get_preset`` resolves
ALL_PRESETS: dict[str, Callable[[], Config]] = {**PRESETS, **TABLE2_PRESETS}
DEFAULT_PRESET = "classroom_fpn"


def get_preset(name: str) -> Config:
    """The named preset (validated); a :class:`ConfigError` with close names for an unknown one."""
    if name not in ALL_PRESETS:
        close = difflib.get_close_matches(name, ALL_PRESETS, n=3)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise ConfigError(f"unknown preset {name!r}{hint}; valid: {', '.join(ALL_PRESETS)}")
    cfg = ALL_PRESETS[name]()
    validate(cfg)
    return cfg

"""The README's preset table, generated from the presets (``python -m mrcnn_lite.config --table``).

``tests/test_presets_frozen.py`` regenerates it and fails when the README's copy (between the
``<!-- presets:begin -->`` and ``<!-- presets:end -->`` markers) differs.
"""

from __future__ import annotations

from mrcnn_lite.config.presets import ALL_PRESETS, get_preset
from mrcnn_lite.config.schema import Config

BEGIN, END = "<!-- presets:begin -->", "<!-- presets:end -->"
HEADER = (
    "| preset | trunk | use | width | image size (min/max) | RoIs per image "
    "| train proposals (pre/post NMS) | test proposals | mask m | classes | parameters |"
)


def num_classes(cfg: Config) -> int:
    """The class count with background: the preset's, else the shapes data's (its categories + 1)."""
    if cfg.model.num_classes is not None:
        return cfg.model.num_classes
    from mrcnn_lite.data.shapes import CATEGORIES

    return len(CATEGORIES) + 1


def parameter_count(cfg: Config) -> int:
    """The model's trainable and frozen parameters (``nn.Parameter``s), built on the meta device (no memory,
    no weights file read)."""
    from dataclasses import replace

    import torch

    from mrcnn_lite.modeling.build import build_model

    cfg = replace(cfg, model=replace(cfg.model, weights_path=None))  # the count needs no weights
    with torch.device("meta"):
        model = build_model(cfg, num_classes(cfg))
    return sum(p.numel() for p in model.parameters())


def _row(name: str) -> str:
    cfg = get_preset(name)
    m, d = cfg.model, cfg.data
    size = f"{d.min_size}/{d.max_size}"
    cells = (
        f"`{name}`", m.backbone, m.arch.upper(), str(m.width), size, str(m.roi_batch_size_per_image),
        f"{m.rpn_pre_nms_top_n_train}/{m.rpn_post_nms_top_n_train}", str(m.rpn_post_nms_top_n_test),
        str(m.mask_resolution), str(num_classes(cfg)), f"{parameter_count(cfg) / 1e6:.2f}M",
    )  # fmt: skip
    return "| " + " | ".join(cells) + " |"


def presets_table() -> str:
    """Every preset as a Markdown table row (``ALL_PRESETS`` order), with the header."""
    lines = [HEADER, "|" + "---|" * HEADER.count(" | ") + "---|"]
    return "\n".join(lines + [_row(name) for name in ALL_PRESETS]) + "\n"


def readme_section(readme: str) -> str:
    """The text between the markers in ``readme`` (ValueError without them)."""
    start, end = readme.find(BEGIN), readme.find(END)
    if start < 0 or end < start:
        raise ValueError(f"README has no {BEGIN} ... {END} block")
    return readme[start + len(BEGIN) : end].strip("\n") + "\n"


def replace_readme_section(readme: str, table: str) -> str:
    """``readme`` with the block between the markers replaced by ``table``."""
    start, end = readme.find(BEGIN), readme.find(END)
    if start < 0 or end < start:
        raise ValueError(f"README has no {BEGIN} ... {END} block")
    return readme[: start + len(BEGIN)] + "\n" + table + readme[end:]

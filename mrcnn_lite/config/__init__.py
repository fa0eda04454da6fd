"""Run configuration: frozen dataclasses, named presets, dotted-key overrides and validation.

A :class:`Config` holds everything a run needs: ``model`` (:class:`ModelConfig`), ``data``
(:class:`DataConfig`), ``train`` (:class:`TrainConfig`), ``seed`` and ``name``. Configs are frozen; every
change makes a new one (``dataclasses.replace``)::

    cfg = get_config("classroom_fpn", ["model.roi_op=roi_pool", "model.roi_mode=max", "train.max_iter=200"])
    cfg = get_config("coco_r50_fpn", {"data.min_size": (640, 800)})   # papermill passes Python values
    json.dump(to_dict(cfg), f)                                          # from_dict(...) reads it back

Modules: :mod:`.schema` (the dataclasses, their ``Literal`` choices, ``scaled_lr``, ``eval_size``),
:mod:`.presets` (``classroom_*`` for a CPU, ``coco_*`` with the paper's §3.1 values, ``table2_*``: the
committed Table 2's recipes; frozen once a result uses them), :mod:`.overrides` (dotted keys, JSON,
argparse, ``rescale_schedule``), :mod:`.typed` (parsing a value by its field's type),
:mod:`.validation` (one check per part of the model), :mod:`.table` (the README's preset table).
"""

from mrcnn_lite.config.overrides import (
    add_config_args,
    all_keys,
    apply_overrides,
    config_from_args,
    from_dict,
    get_config,
    rescale_schedule,
    to_dict,
)
from mrcnn_lite.config.presets import ALL_PRESETS, DEFAULT_PRESET, PRESETS, TABLE2_PRESETS, get_preset
from mrcnn_lite.config.schema import (
    ADAM_BETA2,
    SECTIONS,
    Arch,
    BackboneName,
    BoxHead,
    Config,
    ConfigError,
    DataConfig,
    LRSchedule,
    MaskHead,
    MaskLoss,
    ModelConfig,
    Optimizer,
    RoIMode,
    RoIOp,
    TrainConfig,
    eval_size,
    scaled_lr,
)
from mrcnn_lite.config.table import presets_table
from mrcnn_lite.config.validation import validate

__all__ = [
    "ADAM_BETA2",
    "ALL_PRESETS",
    "DEFAULT_PRESET",
    "PRESETS",
    "SECTIONS",
    "TABLE2_PRESETS",
    "Arch",
    "BackboneName",
    "BoxHead",
    "Config",
    "ConfigError",
    "DataConfig",
    "LRSchedule",
    "MaskHead",
    "MaskLoss",
    "ModelConfig",
    "Optimizer",
    "RoIMode",
    "RoIOp",
    "TrainConfig",
    "add_config_args",
    "all_keys",
    "apply_overrides",
    "config_from_args",
    "eval_size",
    "from_dict",
    "get_config",
    "get_preset",
    "presets_table",
    "rescale_schedule",
    "scaled_lr",
    "to_dict",
    "validate",
]

"""A config from a preset and overrides: dotted keys ("model.roi_op"), JSON round trips, argparse options.

Overrides are ``["model.roi_op=roi_pool", "train.max_iter=200"]`` (command line) or a dict of Python values
(papermill); each value is parsed by its field's type (:mod:`.typed`), and the result validated once,
after all of them. Unknown keys and presets are errors with "did you mean" suggestions.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
from collections.abc import Iterable, Mapping
from dataclasses import fields, replace
from typing import Any

from mrcnn_lite.config.presets import DEFAULT_PRESET, PRESETS, get_preset
from mrcnn_lite.config.schema import SECTIONS, Config, ConfigError, section_type
from mrcnn_lite.config.typed import coerce, hints, type_name
from mrcnn_lite.config.validation import validate

Overrides = Iterable[str] | Mapping[str, Any]


def all_keys() -> list[str]:
    """Every dotted key a config has: ``model.arch`` ... then the top-level ``seed`` and ``name``."""
    keys = [f"{s}.{f.name}" for s in SECTIONS for f in fields(section_type(s))]
    return keys + [f.name for f in fields(Config) if f.name not in SECTIONS]


def _unknown_key(key: str) -> ConfigError:
    close = difflib.get_close_matches(key, all_keys(), n=3)
    hint = f"; did you mean {', '.join(close)}?" if close else "; keys look like model.arch, train.base_lr"
    return ConfigError(f"unknown config key {key!r}{hint}")


def _set(cfg: Config, key: str, value: Any) -> Config:
    """``cfg`` with ``key`` ("model.roi_op", "seed") set to ``value`` parsed by the field's type."""
    parts = key.strip().split(".")
    if len(parts) == 2 and parts[0] in SECTIONS:
        owner, name = getattr(cfg, parts[0]), parts[1]
    elif len(parts) == 1 and parts[0] not in SECTIONS:
        owner, name = cfg, parts[0]
    else:
        raise _unknown_key(key)
    types = hints(type(owner))
    if name not in types:
        raise _unknown_key(key)
    try:
        parsed = coerce(value, types[name])
    except ValueError as e:
        raise ConfigError(f"bad value for {key}: {value!r} (expected {type_name(types[name])})") from e
    if owner is cfg:
        return replace(cfg, **{name: parsed})
    return replace(cfg, **{parts[0]: replace(owner, **{name: parsed})})


def _pairs(overrides: Overrides) -> list[tuple[str, Any]]:
    if isinstance(overrides, Mapping):
        return list(overrides.items())
    if isinstance(overrides, str):
        raise ConfigError(
            f"overrides must be a list of 'key=value' strings or a dict, got the string {overrides!r}"
        )
    pairs = []
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"override {item!r} is not of the form key=value (e.g. model.roi_op=roi_pool)")
        pairs.append((key.strip(), value.strip()))
    return pairs


def apply_overrides(cfg: Config, overrides: Overrides) -> Config:
    """A new config with ``overrides`` applied, then validated.

    ``overrides`` is either ``["model.roi_op=roi_pool", "data.min_size=(192,224)"]`` (strings from the
    command line, parsed by each field's type) or a dict ``{"model.roi_op": "roi_pool", "seed": 1}``
    (papermill parameters: Python values, checked and converted, lists becoming tuples; string values
    are parsed like command-line ones). Validation runs once after all of them, so that several keys
    can change together (e.g. ``model.arch`` with ``model.box_head``).
    """
    for key, value in _pairs(overrides):
        cfg = _set(cfg, key, value)
    validate(cfg)
    return cfg


def get_config(name: str = DEFAULT_PRESET, overrides: Overrides = ()) -> Config:
    """Preset ``name`` with ``overrides`` applied (see :func:`apply_overrides`)."""
    return apply_overrides(get_preset(name), overrides)


def rescale_schedule(cfg: Config, max_iter: int) -> Config:
    """``cfg`` with its schedule stretched or shrunk to ``max_iter`` iterations: the lr steps and the warm-up
    keep their fractions of the run (as Detectron's schedule multipliers "1x", "2x" do, the other way
    round). ``rescale_schedule(get_config("classroom_fpn"), 1000)`` is a shorter classroom run."""
    if not isinstance(max_iter, int) or max_iter <= 0:
        raise ConfigError(f"max_iter must be a positive int, got {max_iter!r}")
    t = cfg.train
    f = max_iter / t.max_iter
    train = replace(
        t,
        max_iter=max_iter,
        steps=tuple(max(1, round(s * f)) for s in t.steps),
        warmup_iters=round(t.warmup_iters * f),
    )
    out = replace(cfg, train=train)
    validate(out)
    return out


def to_dict(cfg: Config) -> dict[str, Any]:
    """A JSON-serialisable nested dict (tuples become lists); :func:`from_dict` reads it back."""

    def plain(v: Any) -> Any:
        return [plain(x) for x in v] if isinstance(v, (tuple, list)) else v

    out = dataclasses.asdict(cfg)
    return {k: ({n: plain(x) for n, x in v.items()} if isinstance(v, dict) else v) for k, v in out.items()}


def from_dict(d: Mapping[str, Any]) -> Config:
    """The :class:`Config` that :func:`to_dict` wrote (missing keys take their defaults); validated."""
    flat: dict[str, Any] = {}
    for key, value in d.items():
        if key in SECTIONS:
            if not isinstance(value, Mapping):
                raise ConfigError(f"config section {key!r} must be a dict, got {type(value).__name__}")
            flat.update({f"{key}.{name}": v for name, v in value.items()})
        else:
            flat[key] = value
    cfg = Config()
    for key, value in flat.items():
        cfg = _set(cfg, key, value)
    validate(cfg)
    return cfg


def add_config_args(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add ``--config NAME`` (a preset) and repeated ``--set key=value`` to ``parser``."""
    parser.add_argument(
        "--config",
        default=DEFAULT_PRESET,
        choices=list(PRESETS),
        metavar="NAME",
        help=f"preset: {', '.join(PRESETS)} (default {DEFAULT_PRESET})",
    )
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config value, e.g. --set model.roi_op=roi_pool --set data.min_size=(192,224)",
    )
    return parser


def config_from_args(args: argparse.Namespace) -> Config:
    """The config chosen by :func:`add_config_args`'s options."""
    return get_config(args.config, args.overrides)

"""Sentences computed from an evaluation, so that a notebook's interpretation follows its numbers.

Notebook 07 reads a model that notebook 06 trains; a retrained model changes every AP. The functions here
turn the values into the statements the notebook makes (which failure type dominates, how AP varies with
object size and why, how box and mask AP compare with the paper's), so no sentence about a trained result
is typed by hand. The evidence about object sizes (how many training objects of each size, how much of a
box other objects cover, the IoU a perfect m x m mask could reach) comes from the ground truth alone.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np
import torch
from pycocotools.coco import COCO

from mrcnn_lite.modeling.losses import mask_targets
from mrcnn_lite.modeling.postprocess import paste_masks

__all__ = [
    "SIZES",
    "SizeEvidence",
    "SizeOutcomes",
    "compare_box_mask",
    "describe_failures",
    "explain_sizes",
    "ground_truth_evidence",
    "outcomes_by_size",
    "size_of",
    "size_table",
]

SIZES = ("small", "medium", "large")
PAPER_BOX_MASK_AP = (38.2, 35.7)  # R101-FPN on test-dev, Tables 3 and 1
FP_KINDS = ("duplicate", "wrong_class", "poor_localization", "background")


def size_of(area: float) -> str:
    """COCO's size range of an object of ``area`` pixels: small < 32², medium < 96², large."""
    return "small" if area < 32**2 else "medium" if area < 96**2 else "large"


@dataclass(frozen=True)
class SizeEvidence:
    """What the ground truth says about one size range (no model involved)."""

    size: str
    val_objects: int
    train_objects: int
    train_share: float  # share of the training objects in this range
    median_side: float  # median sqrt(area) in the original image, pixels
    box_clutter: float  # mean share of an object's box covered by *other* objects' pixels
    mask_ceiling: float  # mean IoU of the ground truth resampled to m x m in its box and pasted back


def _counts(coco: COCO) -> Counter:
    return Counter(size_of(a["area"]) for a in coco.dataset["annotations"] if not a["iscrowd"])


def _image_evidence(coco: COCO, image_id: int, m: int) -> list[tuple[str, float, float, float]]:
    """(size, sqrt(area), box clutter, m x m mask IoU ceiling) of each non-crowd object of one image."""
    anns = [a for a in coco.loadAnns(coco.getAnnIds(imgIds=image_id)) if not a["iscrowd"]]
    if not anns:
        return []
    img = coco.imgs[image_id]
    masks = np.stack([coco.annToMask(a) for a in anns]).astype(bool)
    boxes = torch.tensor([[x, y, x + w, y + h] for x, y, w, h in (a["bbox"] for a in anns)])
    targets = mask_targets(torch.from_numpy(masks), boxes, torch.arange(len(anns)), m)  # §3, the m x m target
    pasted = paste_masks(targets[:, None], boxes, (img["height"], img["width"]), 0.5)[:, 0].numpy()
    union = masks.sum(0)
    rows = []
    for i, a in enumerate(anns):
        x0, y0, x1, y1 = (int(round(v)) for v in boxes[i].tolist())
        inside = union[y0:y1, x0:x1] - masks[i, y0:y1, x0:x1]  # pixels of other objects in the box
        clutter = float((inside > 0).sum() / max((x1 - x0) * (y1 - y0), 1))
        iou = float((pasted[i] & masks[i]).sum() / max((pasted[i] | masks[i]).sum(), 1))
        rows.append((size_of(a["area"]), float(np.sqrt(a["area"])), clutter, iou))
    return rows


def ground_truth_evidence(val: COCO, train: COCO, mask_resolution: int = 28) -> dict[str, SizeEvidence]:
    """Per COCO size range: objects in ``val`` and ``train``, the median side, the clutter in the boxes and
    the mask-resolution ceiling on ``val`` (the IoU a perfect ``mask_resolution``² mask reaches, §3)."""
    train_counts = _counts(train)
    rows = [r for image_id in val.getImgIds() for r in _image_evidence(val, image_id, mask_resolution)]
    total = sum(train_counts.values())
    out = {}
    for s in SIZES:
        mine = np.array([r[1:] for r in rows if r[0] == s]).reshape(-1, 3)
        out[s] = SizeEvidence(
            s, len(mine), train_counts[s], train_counts[s] / max(total, 1),
            float(np.median(mine[:, 0])) if len(mine) else float("nan"),
            float(mine[:, 1].mean()) if len(mine) else float("nan"),
            float(mine[:, 2].mean()) if len(mine) else float("nan"),
        )  # fmt: skip
    return out


@dataclass(frozen=True)
class SizeOutcomes:
    """What the model did to the objects of one size range, at one IoU threshold and score threshold."""

    size: str
    objects: int
    recall: float  # objects matched / objects
    matched_iou: float  # mean IoU of the matches (nan without any)
    wrong_class: float  # share of the objects that a wrong-class detection covers (IoU ≥ the threshold)


def outcomes_by_size(outcomes: Iterable, coco: COCO) -> dict[str, SizeOutcomes]:
    """Group ``match_outcomes`` (objects: ``tp`` and ``missed``; ``wrong_class`` detections by the object
    they cover) by the COCO size range of the ground-truth object."""
    objects: dict[str, set] = {s: set() for s in SIZES}
    found: dict[str, list[float]] = {s: [] for s in SIZES}
    confused: dict[str, set] = {s: set() for s in SIZES}
    for o in outcomes:
        if o.gt_id is None or o.kind not in ("tp", "missed", "wrong_class"):
            continue
        s = size_of(coco.anns[o.gt_id]["area"])
        if o.kind == "wrong_class":
            confused[s].add(o.gt_id)
            continue
        objects[s].add(o.gt_id)
        if o.kind == "tp":
            found[s].append(o.iou)
    return {
        s: SizeOutcomes(
            s,
            len(objects[s]),
            len(found[s]) / max(len(objects[s]), 1),
            float(np.mean(found[s])) if found[s] else float("nan"),
            len(confused[s] & objects[s]) / max(len(objects[s]), 1),
        )  # fmt: skip
        for s in SIZES
    }


def describe_failures(counts: Mapping[str, int], kind: str, missed_under_wrong_class: int) -> str:
    """One paragraph on the failure counts of ``kind`` (box or mask): the dominant false-positive type, its
    share, the runner-up, and the missed objects (how many lie under a wrong-class detection)."""
    fps = {k: counts.get(k, 0) for k in FP_KINDS}
    total = sum(fps.values())
    missed = counts.get("missed", 0)
    if total == 0:
        return f"{kind}: no false positive above the threshold; {missed} objects missed."
    ranked = sorted(fps, key=lambda k: -fps[k])
    first, second = ranked[0], ranked[1]
    text = (f"{kind}: of {total} false positives, the most frequent type is {first.replace('_', ' ')} "
            f"({fps[first]}, {fps[first] / total:.0%})")  # fmt: skip
    if fps[second]:
        text += f", then {second.replace('_', ' ')} ({fps[second]}, {fps[second] / total:.0%})"
    text += f". {missed} objects are missed"
    if missed:
        share = missed_under_wrong_class / missed
        text += (f"; {missed_under_wrong_class} of them ({share:.0%}) lie under a wrong-class detection: "
                 "found in the right place, with the wrong label")  # fmt: skip
    return text + "."


def compare_box_mask(box: Mapping[str, float], mask: Mapping[str, float]) -> list[str]:
    """Sentences comparing box and mask AP (dicts with AP, AP50, AP75 in [0, 1]) with each other and with
    the paper's order (box AP above mask AP, 38.2 vs 35.7 for R101-FPN)."""
    b, m = 100 * box["AP"], 100 * mask["AP"]
    pb, pm = PAPER_BOX_MASK_AP
    order = "above" if b > m else "below" if b < m else "equal to"
    same = (b > m) == (pb > pm)
    lines = [f"box AP {b:.1f} is {order} mask AP {m:.1f}"
             + (f", the paper's order ({pb} vs {pm}); here the gap is {b - m:.1f} points, there {pb - pm:.1f}"
                if same else f", unlike the paper ({pb} vs {pm})")]  # fmt: skip
    for name, s in (("box", box), ("mask", mask)):
        gap = 100 * (s["AP50"] - s["AP75"])
        lines.append(f"{name}: AP50 {100 * s['AP50']:.1f} - AP75 {100 * s['AP75']:.1f} = {gap:.1f} points "
                     f"lost when the IoU bar rises from 0.5 to 0.75 ({gap / max(100 * s['AP50'], 1e-9):.0%} "
                     "of AP50)")  # fmt: skip
    return lines


PAPER_APS_APL = (15.5, 52.4)  # R101-FPN mask APS and APL, Table 1


def size_table(
    evidence: Mapping[str, SizeEvidence], outcomes: Mapping[str, SizeOutcomes], resolution: int = 28
) -> list[str]:
    """The evidence per size, one row per measure: training objects, their share, the median side, the
    clutter in the boxes, the m x m mask ceiling, and the model's recall, match IoU and wrong-class rate."""
    ev, oc = evidence, outcomes
    measures = [
        ("training objects", ">9d", [ev[x].train_objects for x in SIZES]),
        ("share of the training objects", ">9.0%", [ev[x].train_share for x in SIZES]),
        ("median side sqrt(area), original px", ">9.0f", [ev[x].median_side for x in SIZES]),
        ("box covered by other objects (mean)", ">9.0%", [ev[x].box_clutter for x in SIZES]),
        (f"IoU of a perfect {resolution}x{resolution} mask", ">9.3f", [ev[x].mask_ceiling for x in SIZES]),
        ("model: recall at IoU 0.5", ">9.0%", [oc[x].recall for x in SIZES]),
        ("model: mean IoU of the matches", ">9.2f", [oc[x].matched_iou for x in SIZES]),
        ("model: objects under a wrong-class detection", ">9.0%", [oc[x].wrong_class for x in SIZES]),
    ]
    lines = [f"{'':<46}" + "".join(f"{x:>9}" for x in SIZES)]
    return lines + [f"{label:<46}" + "".join(f"{v:{fmt}}" for v in values) for label, fmt, values in measures]


SAME_AP, SAME_RATE, SAME_IOU = 1.0, 0.02, 0.02  # differences below these (AP points, shares, IoU) are ties


def _worse_on(
    hard: str, easy: str, ev: Mapping[str, SizeEvidence], oc: Mapping[str, SizeOutcomes]
) -> list[str]:
    """The measures on which size ``hard`` is clearly worse off than size ``easy``, each with both values."""
    h, e = oc[hard], oc[easy]
    checks = [
        (ev[hard].train_objects < 0.8 * ev[easy].train_objects,
         f"fewer in training ({ev[hard].train_objects} vs {ev[easy].train_objects} objects)"),
        (h.recall < e.recall - SAME_RATE, f"found less often (recall {h.recall:.0%} vs {e.recall:.0%})"),
        (h.wrong_class > e.wrong_class + SAME_RATE,
         f"more often under a wrong-class detection ({h.wrong_class:.0%} vs {e.wrong_class:.0%})"),
        (h.matched_iou < e.matched_iou - SAME_IOU,
         f"outlined less tightly (match IoU {h.matched_iou:.2f} vs {e.matched_iou:.2f})"),
        (ev[hard].box_clutter > ev[easy].box_clutter + SAME_RATE,
         f"in more cluttered boxes ({ev[hard].box_clutter:.0%} vs {ev[easy].box_clutter:.0%} covered)"),
    ]  # fmt: skip
    return [text for holds, text in checks if holds]


def explain_sizes(
    ap: Mapping[str, float],
    evidence: Mapping[str, SizeEvidence],
    outcomes: Mapping[str, SizeOutcomes],
    kind: str = "mask",
) -> list[str]:
    """The AP-by-size ordering of ``kind`` (``ap``: APs, APm, APl in [0, 1]) against the paper's, then which
    measures of :func:`size_table` point the same way (the lower-scoring size is worse on them)."""
    s, m, lg = (100 * ap[k] for k in ("APs", "APm", "APl"))
    ps, pl = PAPER_APS_APL
    lines = [f"{kind} APs {s:.1f}, APm {m:.1f}, APl {lg:.1f}: "]
    if abs(s - lg) < SAME_AP:
        lines[0] += f"small and large objects score about the same, unlike the paper (APS {ps} < APL {pl})"
    else:
        small_wins = s > lg
        order = "the reverse of" if small_wins else "the same order as"
        lines[0] += (f"small objects score {'above' if small_wins else 'below'} large ones, "
                     f"{order} the paper (APS {ps} < APL {pl})")
        hard, easy = ("large", "small") if small_wins else ("small", "large")
        found = "; ".join(_worse_on(hard, easy, evidence, outcomes)) or "worse on none of the measures above"
        lines.append(f"{hard} objects, against {easy} ones, are: {found}")
    if kind == "mask":
        ceilings = ", ".join(f"{evidence[x].mask_ceiling:.3f} ({x})" for x in SIZES)
        low = min(evidence[x].mask_ceiling for x in SIZES)
        verdict = "it costs every size little" if low >= 0.95 else "a real limit"
        lines.append(f"the mask resolution: a perfect mask at the head's m x m reaches IoU {ceilings}: "
                     f"{verdict}")  # fmt: skip
    return lines

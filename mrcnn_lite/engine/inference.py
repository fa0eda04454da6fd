"""Inference over a dataset in original image coordinates, timed per stage, and COCO evaluation.

:func:`predict_dataset` runs the stages of ``MaskRCNN.forward`` one by one, in its order, so each can be
timed as the paper reports inference time (§4 "Timing": 195 ms per image for R101-FPN on an M40 GPU, plus
15 ms of CPU time to resize the outputs to the original resolution):

- ``data``: reading and resizing the image (the data transform, on the CPU);
- ``preprocess``: normalising and padding into a batch (``model.preprocess``);
- ``backbone``: trunk (and FPN);
- ``rpn``: proposals;
- ``box_head``: RoI pooling, box classification and regression, NMS (``roi_heads`` minus the mask part);
- ``mask_head``: the mask branch on the detections (FPN: mask pooling and the FCN; C4: res5 on the
  detections and the deconv head), timed with forward hooks inside ``roi_heads``;
- ``mask_paste``: boxes rescaled and masks pasted at the original size (``model.postprocess``).

Times are the mean milliseconds per image.

In a process group (``torchrun``, see :mod:`mrcnn_lite.engine.distributed`) each of the N ranks predicts
the images ``rank, rank + N, ...`` and the results are gathered (``all_gather_object``) in the dataset's
order, so they equal one process's (with ``batch_size=1``: in larger batches the padding depends on the
batch's other images); rank 0 alone runs the COCO evaluation.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import torch
from torch.utils.data import Subset

from mrcnn_lite.config import Config
from mrcnn_lite.data.coco import CocoDetection
from mrcnn_lite.data.loader import build_dataloader
from mrcnn_lite.data.transforms import build_transforms
from mrcnn_lite.engine.distributed import all_gather_object, get_rank, get_world_size, is_main_process
from mrcnn_lite.evaluation.coco_eval import CocoStats, check_ground_truth, evaluate, to_coco_results
from mrcnn_lite.modeling.mask_rcnn import MaskRCNN
from mrcnn_lite.modeling.roi_heads import Res5RoIHeads

STAGES = ("data", "preprocess", "backbone", "rpn", "box_head", "mask_head", "mask_paste")


class _MaskBranchTimer:
    """Times the mask branch inside ``roi_heads`` with forward hooks.

    The branch starts at ``mask_pooler``'s call (FPN/C5: :class:`StandardRoIHeads`) or, for C4
    (:class:`Res5RoIHeads`, one pooler), at the second ``box_pooler`` call of a ``roi_heads`` forward (res5
    on the detections), and ends when ``mask_head`` returns.
    """

    def __init__(self, model: MaskRCNN, sync: Callable[[], None]) -> None:
        heads = model.roi_heads
        self.sync, self.seconds, self._start, self._pool_calls = sync, 0.0, None, 0
        self.c4 = isinstance(heads, Res5RoIHeads)
        # prepend: the span starts before any other pre-hook of these modules runs (and is counted)
        self.handles = [heads.register_forward_pre_hook(self._reset, prepend=True)]
        if heads.mask_head is not None:
            start = heads.box_pooler if self.c4 else heads.mask_pooler
            self.handles += [
                start.register_forward_pre_hook(self._maybe_start, prepend=True),
                heads.mask_head.register_forward_hook(self._stop),
            ]

    def _reset(self, *_: Any) -> None:
        self._pool_calls, self._start = 0, None

    def _maybe_start(self, *_: Any) -> None:
        self._pool_calls += 1
        if not self.c4 or self._pool_calls == 2:
            self.sync()
            self._start = time.perf_counter()

    def _stop(self, *_: Any) -> None:
        if self._start is not None:
            self.sync()
            self.seconds += time.perf_counter() - self._start
            self._start = None

    def take(self) -> float:
        """Seconds spent in the mask branch since the last call."""
        seconds, self.seconds = self.seconds, 0.0
        return seconds

    def remove(self) -> None:
        for h in self.handles:
            h.remove()


def eval_dataset(cfg: Config, split: str | None = None, max_images: int | None = None) -> CocoDetection:
    """The split a config is evaluated on (default ``data.val_split``), with the test-time transform (the
    largest ``data.min_size``); ``max_images`` keeps the first N images (:func:`evaluate_model` then
    scores those alone)."""
    d = cfg.data
    dataset = CocoDetection(
        d.root, split or d.val_split, train=False, transforms=build_transforms(False, d.min_size, d.max_size)
    )
    if max_images is not None:
        if max_images <= 0:
            raise ValueError(f"max_images must be positive or None, got {max_images}")
        dataset.ids = dataset.ids[:max_images]
    return dataset


@torch.no_grad()
def _staged_forward(
    model: MaskRCNN,
    images: list[torch.Tensor],
    orig_sizes: list[tuple[int, ...]],
    sync: Callable[[], None],
    timer: _MaskBranchTimer,
    totals: dict[str, float],
    start: float,
) -> list[dict[str, torch.Tensor]]:
    """``model(images, orig_sizes=...)``'s outputs, stage by stage, adding each stage's seconds since
    ``start`` to ``totals`` (the mask head's, measured by ``timer``, taken out of the box head's)."""
    marks = [start]

    def mark() -> None:
        sync()
        marks.append(time.perf_counter())

    image_list = model.preprocess(images)
    mark()
    features = model.backbone(image_list.tensors)
    mark()
    proposals, _ = model.rpn(image_list, features)
    mark()
    detections, _ = model.roi_heads(features, proposals, image_list.image_sizes)
    mark()
    outputs = model.postprocess(detections, image_list.image_sizes, orig_sizes)
    mark()
    mask_s = timer.take()
    spans = [b - a for a, b in zip(marks, marks[1:], strict=False)]
    totals["preprocess"] += spans[0]
    totals["backbone"] += spans[1]
    totals["rpn"] += spans[2]
    totals["box_head"] += spans[3] - mask_s
    totals["mask_head"] += mask_s
    totals["mask_paste"] += spans[4]
    return outputs


def _gather_ranks(
    per_image: list[tuple[int, list[dict[str, Any]]]], totals: dict[str, float]
) -> tuple[list[tuple[int, list[dict[str, Any]]]], dict[str, float]]:
    """Every rank's results, in the dataset's order, and the stage times summed over the ranks."""
    gathered = all_gather_object((per_image, dict(totals)))
    per_image = sorted((pair for part, _ in gathered for pair in part), key=lambda pair: pair[0])
    totals = defaultdict(float)
    for _, rank_totals in gathered:
        for k, v in rank_totals.items():
            totals[k] += v
    return per_image, totals


def predict_dataset(
    model: MaskRCNN, dataset: CocoDetection, batch_size: int = 1, progress: bool = False
) -> tuple[list[dict[str, Any]], dict[str, float]]:
    """COCO-format results for every image of ``dataset`` and the mean ms per image of each stage.

    ``dataset`` should use the evaluation transform; predictions are mapped back to each image's
    ``orig_size`` as COCO evaluation needs. The outputs equal ``model(images, orig_sizes=...)``'s.
    In a process group every rank predicts its shard and gets all the results, in the dataset's order.
    """
    from tqdm.auto import tqdm

    was_training = model.training
    model.eval()
    device = next(model.parameters()).device

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    timer = _MaskBranchTimer(model, sync)
    totals: dict[str, float] = defaultdict(float)
    rank, world = get_rank(), get_world_size()
    shard = list(range(rank, len(dataset), world))
    per_image: list[tuple[int, list[dict[str, Any]]]] = []  # (dataset index, its results)
    loader = build_dataloader(dataset if world == 1 else Subset(dataset, shard), batch_size, train=False)
    try:
        tic = time.perf_counter()
        for images, targets in tqdm(loader, disable=not progress, desc="inference"):
            images = [im.as_subclass(torch.Tensor).to(device) for im in images]
            orig_sizes = [tuple(int(v) for v in t["orig_size"]) for t in targets]
            start = time.perf_counter()
            totals["data"] += start - tic
            outputs = _staged_forward(model, images, orig_sizes, sync, timer, totals, start)
            for target, out in zip(targets, outputs, strict=True):
                index = shard[len(per_image)]
                per_image.append((index, to_coco_results(target["image_id"], out, dataset.label_to_cat_id)))
            tic = time.perf_counter()
    finally:
        timer.remove()
        model.train(was_training)
    if world > 1:
        per_image, totals = _gather_ranks(per_image, totals)
    results = [r for _, image_results in per_image for r in image_results]
    n = max(1, len(dataset))
    timing = {k: 1000 * totals[k] / n for k in STAGES}
    timing["total"] = sum(timing.values())
    return results, timing


def evaluate_model(
    model: MaskRCNN, dataset: CocoDetection, batch_size: int = 1, progress: bool = False
) -> dict[str, Any]:
    """``{"bbox": CocoStats, "segm": CocoStats, "timing": {stage: ms}}`` (``segm`` only with masks).

    COCOeval scores the images of ``dataset.ids`` (the whole split, or the subset a caller kept, e.g.
    ``dataset.ids = dataset.ids[:50]`` for a quick check). In a process group the ranks share the
    inference; rank 0 evaluates, the others get ``{"timing"}``.

    The ground truth is checked before the first image is predicted
    (:func:`~mrcnn_lite.evaluation.coco_eval.check_ground_truth`): a file that cannot be evaluated raises
    ``CocoFormatError`` at once, and unusable annotations are reported (one warning per IoU type, on rank
    0) and evaluated as ignore regions, instead of pycocotools failing after the whole inference."""
    ids = list(dataset.ids)
    iou_types = ["bbox"] + (["segm"] if model.roi_heads.mask_head is not None else [])
    check = check_ground_truth(dataset.coco, ids)  # every rank: all fail together, none waits for the others
    if is_main_process():
        check.warn(iou_types)
    results, timing = predict_dataset(model, dataset, batch_size, progress and is_main_process())
    if not is_main_process():
        return {"timing": timing}
    out: dict[str, Any] = {t: evaluate(dataset.coco, results, t, ids, check) for t in iou_types}
    out["timing"] = timing
    return out


def stats_to_dict(metrics: dict[str, Any]) -> dict[str, Any]:
    """``evaluate_model``'s output as plain JSON: each ``CocoStats`` becomes its stats dict."""
    return {k: (v.stats if isinstance(v, CocoStats) else v) for k, v in metrics.items()}

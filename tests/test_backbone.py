"""ResNet trunks, C4/C5/FPN backbones (Mask R-CNN §3.1, Figure 4) against torchvision and hand arithmetic."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn
from torchvision.ops import FrozenBatchNorm2d

from mrcnn_lite.modeling.backbone import (
    DEPTHS,
    ResNet,
    build_backbone,
    build_resnet,
    convert_frozen_batchnorm,
)
from mrcnn_lite.modeling.fpn import FPN

# Every stride-2 layer (7x7/2 conv pad 3, 3x3/2 max pool pad 1, 3x3/2 conv pad 1, 1x1/2 conv) maps n to
# ceil(n / 2): 224 -> 112 -> 56 -> 28 -> 14 -> 7 (P6: 4); 288 -> 144 -> 72 -> 36 -> 18 -> 9 (P6: 5)
SIZES_224x288 = {"2": (56, 72), "3": (28, 36), "4": (14, 18), "5": (7, 9), "6": (4, 5)}
# odd sizes: 97 -> 49 -> 25 -> 13 -> 7 -> 4 (P6: 2); 131 -> 66 -> 33 -> 17 -> 9 -> 5 (3)
SIZES_97x131 = {"2": (25, 33), "3": (13, 17), "4": (7, 9), "5": (4, 5), "6": (2, 3)}
# (c4, c5) channels at width 16: BasicBlock 16 * 4, 16 * 8; Bottleneck x4 expansion
CHANNELS_W16 = {"resnet18": (64, 128), "resnet50": (256, 512)}


@pytest.fixture(scope="module")
def image() -> torch.Tensor:
    return torch.randn(2, 3, 224, 288, generator=torch.Generator().manual_seed(0))


def _randomize_bn(module: nn.Module, seed: int = 0) -> None:
    """Non-trivial BN statistics and affine parameters, so that BN variants can be told apart."""
    g = torch.Generator().manual_seed(seed)
    for m in module.modules():
        if isinstance(m, nn.BatchNorm2d):
            with torch.no_grad():
                m.weight.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.num_features, generator=g) * 0.1)
                m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)


@pytest.mark.parametrize("depth", ["resnet18", "resnet50"])
@pytest.mark.parametrize("arch", ["c4", "c5", "fpn"])
def test_output_keys_shapes_strides(depth: str, arch: str, image: torch.Tensor) -> None:
    torch.manual_seed(0)
    bb = build_backbone(depth, arch, width=16, fpn_channels=32).eval()
    with torch.no_grad():
        out = bb(image)
    c4, c5 = CHANNELS_W16[depth]
    if arch == "fpn":
        names = [f"p{i}" for i in range(2, 7)]
        expected = {f"p{i}": (2, 32, *SIZES_224x288[str(i)]) for i in range(2, 7)}
        assert bb.strides == {"p2": 4, "p3": 8, "p4": 16, "p5": 32, "p6": 64}
        assert bb.out_channels == 32
    else:
        name, channels = ("c4", c4) if arch == "c4" else ("c5", c5)
        names = [name]
        expected = {name: (2, channels, *SIZES_224x288[name[1]])}
        assert bb.strides == {name: 16 if arch == "c4" else 32}
        assert bb.out_channels == channels
    assert list(out) == names
    assert {k: tuple(v.shape) for k, v in out.items()} == expected
    for k, v in out.items():  # stride = input size / feature size, up to the ceil rounding
        assert v.shape[-2] == -(-224 // bb.strides[k]) and v.shape[-1] == -(-288 // bb.strides[k])
    if arch == "c4":  # res5 is the box head: 14x14 RoI features -> 7x7 (first block has stride 2)
        assert isinstance(bb.res5, nn.Module) and bb.res5 is bb.body.layer4
        assert bb.res5_out_channels == c5
        with torch.no_grad():
            assert bb.res5(torch.randn(3, c4, 14, 14)).shape == (3, c5, 7, 7)
    else:
        assert bb.res5 is None and bb.res5_out_channels is None


def test_odd_input_sizes() -> None:
    bb = build_backbone("resnet18", "fpn", width=16, fpn_channels=16).eval()
    with torch.no_grad():
        out = bb(torch.randn(1, 3, 97, 131))
    assert {k: tuple(v.shape[-2:]) for k, v in out.items()} == {f"p{k}": v for k, v in SIZES_97x131.items()}


def test_c4_does_not_run_res5_on_the_image(image: torch.Tensor) -> None:
    bb = build_backbone("resnet18", "c4", width=16).eval()
    calls = []
    bb.body.layer4.register_forward_hook(lambda *_: calls.append(1))
    with torch.no_grad():
        bb(image[:1])
    assert calls == []


@pytest.mark.parametrize("depth", list(DEPTHS))
def test_state_dict_matches_torchvision_at_width_64(depth: str) -> None:
    with torch.device("meta"):  # shapes only: no memory, no init cost
        ours = ResNet(depth, width=64).state_dict()
        theirs = getattr(torchvision.models, depth)(weights=None).state_dict()
    theirs = {k: v for k, v in theirs.items() if not k.startswith("fc.")}
    assert list(ours) == list(theirs)
    assert {k: tuple(v.shape) for k, v in ours.items()} == {k: tuple(v.shape) for k, v in theirs.items()}


@pytest.mark.parametrize("depth", ["resnet34", "resnet50", "resnext101_32x8d"])
def test_width_scales_every_channel(depth: str) -> None:
    """width=16 is a quarter of every channel count (stem, stages, ResNeXt groups' widths), nothing else."""
    with torch.device("meta"):
        quarter = ResNet(depth, width=16).state_dict()
        full = ResNet(depth, width=64).state_dict()
    assert list(quarter) == list(full)
    for key, v in full.items():
        want = list(v.shape)
        for dim in range(min(2, len(want))):
            if not (key == "conv1.weight" and dim == 1):  # the 3 RGB input channels stay
                want[dim] //= 4
        assert list(quarter[key].shape) == want, key
    if depth == "resnext101_32x8d":  # 32 groups of 2 channels (8 per group at width 64)
        conv = ResNet(depth, width=16).layer1[0].conv2
        assert conv.groups == 32 and conv.in_channels == 64


def _torchvision_c5(tv: nn.Module, x: torch.Tensor) -> dict[str, torch.Tensor]:
    x = tv.maxpool(tv.relu(tv.bn1(tv.conv1(x))))
    out = {}
    for i, layer in enumerate([tv.layer1, tv.layer2, tv.layer3, tv.layer4]):
        x = layer(x)
        out[f"c{i + 2}"] = x
    return out


@pytest.fixture(scope="module")
def resnet18_file(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, nn.Module]:
    """A torchvision resnet18 (random init, random BN statistics) saved as a state_dict file, fc included."""
    torch.manual_seed(1)
    tv = torchvision.models.resnet18(weights=None)
    _randomize_bn(tv, seed=1)
    path = tmp_path_factory.mktemp("weights") / "resnet18.pth"
    torch.save(tv.state_dict(), path)
    return str(path), tv.eval()


@pytest.mark.parametrize("frozen_bn", [False, True])
def test_weights_load_and_match_torchvision(resnet18_file: tuple[str, nn.Module], frozen_bn: bool) -> None:
    """Loaded weights compute what torchvision computes. In float64, where the only difference left is
    rounding (frozen BN folds mean and variance into one scale and shift): in float32 that rounding is
    1e-5 on some CPUs' convolution kernels and not on others, so a float32 comparison tests the CPU."""
    path, tv = resnet18_file
    tv = copy.deepcopy(tv).double()
    x = torch.randn(2, 3, 64, 96, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    close = {"rtol": 1e-10, "atol": 1e-10}
    with torch.no_grad():
        ref = _torchvision_c5(tv, x)
        c5 = build_backbone("resnet18", "c5", frozen_bn=frozen_bn, weights_path=path).eval().double()
        torch.testing.assert_close(c5(x)["c5"], ref["c5"], **close)
        c4 = build_backbone("resnet18", "c4", frozen_bn=frozen_bn, weights_path=path).eval().double()
        feats = c4(x)["c4"]
        torch.testing.assert_close(feats, ref["c4"], **close)
        torch.testing.assert_close(c4.res5(feats), ref["c5"], **close)
        fpn = build_backbone("resnet18", "fpn", frozen_bn=frozen_bn, weights_path=path).eval().double()
        for k, v in fpn.body(x).items():
            torch.testing.assert_close(v, ref[k], **close)


def test_weights_errors(resnet18_file: tuple[str, nn.Module], tmp_path) -> None:
    missing = tmp_path / "nowhere" / "resnet50.pth"
    with pytest.raises(FileNotFoundError, match="nowhere/resnet50.pth"):
        build_backbone("resnet50", "fpn", weights_path=str(missing))
    path, _ = resnet18_file
    with pytest.raises(ValueError, match="width=16"):
        build_backbone("resnet18", "fpn", width=16, weights_path=path)
    with pytest.raises(RuntimeError, match=r"resnet18\.pth.*resnet34"):  # right family, wrong depth
        build_backbone("resnet34", "c5", weights_path=path)


def test_weights_of_a_narrow_trunk_load_into_the_same_width(tmp_path) -> None:
    """A trunk file saved from a width-16 network (as the Table 2 grid's shared trunk) loads into width 16:
    the loaded trunk computes what the saved one does, and every other width is refused by name."""
    torch.manual_seed(5)
    saved = ResNet("resnet18", width=16).eval()
    with torch.no_grad():  # non-trivial BN statistics, so that they must be loaded too
        for m in saved.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
    path = tmp_path / "trunk.pth"
    torch.save(saved.state_dict(), path)
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(6), dtype=torch.float64)
    loaded = build_backbone("resnet18", "c5", width=16, frozen_bn=True, weights_path=path).eval().double()
    with torch.no_grad():  # float64: frozen BN's folded affine rounds otherwise, by a CPU-dependent amount
        torch.testing.assert_close(loaded(x)["c5"], saved.double()(x)["c5"], rtol=1e-10, atol=1e-10)
    with pytest.raises(ValueError, match="width-16 network.*width=32"):
        build_backbone("resnet18", "c5", width=32, weights_path=path)


def test_frozen_bn_equals_eval_mode_bn() -> None:
    torch.manual_seed(3)
    bn_trunk = ResNet("resnet50", width=16)
    _randomize_bn(bn_trunk, seed=3)
    frozen = convert_frozen_batchnorm(copy.deepcopy(bn_trunk)).train()  # train mode: must not matter
    assert not any(isinstance(m, nn.BatchNorm2d) for m in frozen.modules())
    n_bn = sum(isinstance(m, nn.BatchNorm2d) for m in bn_trunk.modules())
    assert sum(isinstance(m, FrozenBatchNorm2d) for m in frozen.modules()) == n_bn
    # no BN parameters left: only the conv weights train
    conv_params = sum(m.weight.numel() for m in bn_trunk.modules() if isinstance(m, nn.Conv2d))
    assert sum(p.numel() for p in frozen.parameters()) == conv_params
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        ref = bn_trunk.eval()(x)
        out = frozen(x)
    for k in ref:  # same affine map, different float rounding (x * scale + shift): compare to the scale
        assert (out[k] - ref[k]).abs().max() <= 1e-5 * ref[k].abs().max(), k
    bn = bn_trunk.bn1  # one layer alone: equal to float precision
    y = torch.randn(2, bn.num_features, 5, 5)
    torch.testing.assert_close(frozen.bn1(y), bn(y), rtol=1e-6, atol=1e-6)
    bb = build_backbone("resnet18", "fpn", width=16, frozen_bn=True)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in bb.modules())


@pytest.mark.parametrize("freeze_at", [0, 1, 2, 3, 5])
def test_freeze_at(freeze_at: int) -> None:
    bb = build_backbone("resnet18", "fpn", width=16, freeze_at=freeze_at)
    units = ["conv1", "layer1", "layer2", "layer3", "layer4"]  # stem (conv1 + bn1), res2..res5
    frozen_units = set(units[:freeze_at]) | ({"bn1"} if freeze_at >= 1 else set())
    for name, p in bb.named_parameters():
        top = name.split(".")[1] if name.startswith("body.") else "fpn"
        assert p.requires_grad == (top not in frozen_units), name
    for name in ["bn1", *units[1:]]:  # frozen stages' BN stop tracking statistics too (detectron2)
        kinds = {type(m) for m in getattr(bb.body, name).modules()} & {nn.BatchNorm2d, FrozenBatchNorm2d}
        assert kinds == ({FrozenBatchNorm2d} if name in frozen_units else {nn.BatchNorm2d}), name
    with pytest.raises(ValueError, match="freeze_at must be in 0..5"):
        build_resnet("resnet18", width=16, freeze_at=6)


def test_fpn_matches_the_paper_equations() -> None:
    """P5 = out(lat(C5)); P4 = out(lat(C4) + up2(lat(C5))) ...; P6 = P5 subsampled by 2 (Lin et al. 2017)."""
    torch.manual_seed(4)
    channels = [8, 16, 32, 64]
    fpn = FPN(channels, out_channels=12).eval()
    for p in fpn.parameters():  # non-zero biases, so that a missing term would show
        nn.init.normal_(p, std=0.2)
    sizes = [(26, 34), (13, 17), (7, 9), (4, 5)]  # odd sizes: nearest upsampling to the lateral's size
    feats = {f"c{i + 2}": torch.randn(2, c, *s) for i, (c, s) in enumerate(zip(channels, sizes, strict=True))}
    with torch.no_grad():
        out = fpn(dict(feats))
        lat = [fpn.fpn.inner_blocks[i][0] for i in range(4)]
        smooth = [fpn.fpn.layer_blocks[i][0] for i in range(4)]
        top = lat[3](feats["c5"])
        want = {"p5": smooth[3](top)}
        for i in (2, 1, 0):
            c = feats[f"c{i + 2}"]
            top = lat[i](c) + F.interpolate(top, size=c.shape[-2:], mode="nearest")
            want[f"p{i + 2}"] = smooth[i](top)
        want["p6"] = want["p5"][..., ::2, ::2]
    assert list(out) == ["p2", "p3", "p4", "p5", "p6"]
    for k in want:
        torch.testing.assert_close(out[k], want[k], rtol=1e-5, atol=1e-5)
    assert out["p6"].shape[-2:] == (2, 3)
    with pytest.raises(ValueError, match="c2, c3, c4, c5"):
        fpn({"c3": feats["c3"], "c4": feats["c4"]})


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match=r"unknown backbone depth 'resnet152'.*resnet18, resnet34, resnet50"):
        build_backbone("resnet152", "fpn")
    with pytest.raises(ValueError, match=r"unknown backbone arch 'c3'; valid: c4, c5, fpn"):
        build_backbone("resnet18", "c3")
    with pytest.raises(ValueError, match="width must be a positive int"):
        build_backbone("resnet18", "fpn", width=0)
    with pytest.raises(ValueError, match="divisible by 64"):
        build_backbone("resnext101_32x8d", "fpn", width=4)


def test_classroom_fpn_pretrained_loads_the_committed_trunk_from_any_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The preset names the committed trunk by a path from the checkout's top folder; built from another
    working directory (a notebook runs in notebooks/), every trunk tensor is the file's float16 value, and
    the preset is classroom_fpn plus exactly the paper's fine-tuning switches."""
    from mrcnn_lite.config import get_config
    from mrcnn_lite.config.classroom import PRETRAINED_TRUNK
    from mrcnn_lite.modeling.build import build_model

    repo = Path(__file__).resolve().parents[1]
    monkeypatch.chdir(tmp_path)
    cfg = get_config("classroom_fpn_pretrained")
    assert not Path(cfg.model.weights_path).is_absolute() and not Path(cfg.model.weights_path).exists()
    trunk = build_model(cfg, 7).backbone.body
    state = torch.load(repo / PRETRAINED_TRUNK, weights_only=True)
    body = trunk.state_dict()  # frozen BatchNorm keeps no step counter
    assert set(body) == {k for k in state if not k.endswith("num_batches_tracked")}
    for key, value in ((k, v) for k, v in state.items() if k in body):
        assert torch.equal(body[key], value.to(body[key].dtype)), key
    scratch = get_config("classroom_fpn", [f"model.weights_path={PRETRAINED_TRUNK}", "model.frozen_bn=true",
                                           "model.freeze_at=2"])  # fmt: skip
    assert (cfg.model, cfg.train, cfg.data) == (scratch.model, scratch.train, scratch.data)

"""Behaviour of the CAMERAS core (Algorithm 1) against a plain reference implementation."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from cameras import Cameras, cameras
from cameras.core import (
    as_targets,
    fuse_maps,
    interpolation_matrix,
    normalize_maps,
    resize_to,
    scaled_shape,
)
from cameras.hooks import LayerCapture
from cameras.reference import cameras_reference

SIZES = [48, 72, 100]


@pytest.fixture(scope="module")
def resnet18_f64():
    torch.manual_seed(0)
    return torchvision.models.resnet18().eval().double()


@pytest.fixture(scope="module")
def densenet121_f64():
    torch.manual_seed(1)
    return torchvision.models.densenet121().eval().double()


def images(b=2, h=48, w=48, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, 3, h, w, generator=g, dtype=dtype)


def hook_count(model: nn.Module) -> int:
    return sum(len(m._forward_hooks) + len(m._backward_hooks) for m in model.modules())


class SizeFlipNet(nn.Module):
    """Tiny CNN whose top-1 flips to class 0 above ``flip`` pixels, for images of positive mean.

    Lets the tests exercise the rule that drops sizes whose prediction changed.
    """

    def __init__(self, flip: int = 100, classes: int = 5):
        super().__init__()
        torch.manual_seed(3)
        self.body = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.ReLU())
        self.block = nn.Sequential(nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.ReLU())
        self.fc = nn.Linear(16, classes)
        self.flip = flip

    def forward(self, x):
        a = self.block(self.body(x))
        logits = self.fc(a.mean(dim=(2, 3)))
        shift = torch.zeros_like(logits)
        shift[:, 1] = 50.0  # class 1 wins ...
        if x.shape[-1] > self.flip:  # ... unless the input is large and its mean positive
            shift[:, 0] = 100.0 * (x.mean(dim=(1, 2, 3)) > 0)
        return logits + shift


# -- exactness --------------------------------------------------------------------------
@pytest.mark.parametrize("targets", [None, [3, 7]])
def test_equals_reference_resnet18_float64(resnet18_f64, targets):
    x = images()
    fast = Cameras(resnet18_f64, "layer4", SIZES)(x, targets)
    slow = cameras_reference(resnet18_f64, x, targets, "layer4", SIZES)
    assert fast.shape == (2, 48, 48)
    assert torch.allclose(fast, slow, atol=1e-6, rtol=0)
    assert fast.min() == 0 and fast.max() == 1


@pytest.mark.parametrize("targets", [None, 5])
def test_equals_reference_densenet121_float64(densenet121_f64, targets):
    x = images(seed=1)
    fast = Cameras(densenet121_f64, "features", [48, 80])(x, targets)
    slow = cameras_reference(densenet121_f64, x, targets, "features", [48, 80])
    assert torch.allclose(fast, slow, atol=1e-6, rtol=0)


def test_dropped_sizes_follow_top1_and_match_reference():
    model = SizeFlipNet(flip=100).double().eval()
    x = images(b=3, h=64, w=64, seed=4)
    cam = Cameras(model, "block", [64, 96, 128, 160])
    fast = cam(x)
    flips = (x.mean(dim=(1, 2, 3)) > 0).tolist()
    assert any(flips) and not all(flips), "test needs images that do and do not flip"
    stay = [not f for f in flips]
    expect = torch.tensor([[True] * 3, [True] * 3, stay, stay])
    assert torch.equal(cam.kept, expect)
    slow = cameras_reference(model, x, None, "block", [64, 96, 128, 160])
    assert torch.allclose(fast, slow, atol=1e-6, rtol=0)
    # the dropped sizes really change the result
    only_kept = Cameras(model, "block", [64, 96])(x)
    dropped = torch.tensor(flips)  # these images dropped 128 and 160: same as sizes [64, 96]
    assert torch.allclose(fast[dropped], only_kept[dropped], atol=1e-6)
    assert not torch.allclose(fast[~dropped], only_kept[~dropped], atol=1e-3)
    # explicit targets keep every size (authors' code)
    cam(x, [1, 1, 1])
    assert bool(cam.kept.all())


def test_keep_rules():
    model = SizeFlipNet(flip=100).double().eval()
    x = images(b=3, h=64, w=64, seed=4)
    sizes = [64, 96, 128, 160]
    auto = Cameras(model, "block", sizes)(x)
    # Algorithm 1's rule also applies to explicit targets with keep="prediction"
    top1 = Cameras(model, "block", sizes).capture(x).targets[:, 0]
    pred = Cameras(model, "block", sizes, keep="prediction")
    assert torch.allclose(pred(x, top1), auto, atol=1e-12)
    assert not bool(pred.kept.all())
    # keep="all" averages every size even without targets
    every = Cameras(model, "block", sizes, keep="all")
    assert torch.allclose(every(x), Cameras(model, "block", sizes)(x, top1), atol=1e-12)
    assert bool(every.kept.all())
    with pytest.raises(ValueError, match="keep must be one of"):
        Cameras(model, "block", sizes, keep="top1")


def test_capture_and_fuse_are_the_two_halves(densenet121_f64):
    x = images(seed=6)
    sizes = [48, 64, 80]
    cam = Cameras(densenet121_f64, "features", sizes)
    targets = torch.tensor([[3, 5, 3], [7, 1, 2]])
    cap = cam.capture(x, targets)
    assert cap.targets.shape == (2, 3) and cap.gradients[0].shape[:2] == (2, 3)
    assert cap.logits.shape == (3, 2, 1000) and cap.kept.shape == (3, 2)
    maps = cam.fuse(cap)
    assert maps.shape == (2, 3, 48, 48)
    for j in range(3):  # several classes from one capture = one call per class
        assert torch.allclose(maps[:, j], cam(x, targets[:, j]), atol=1e-10)
        assert torch.allclose(cam.fuse(cap, target=j), maps[:, j])
    # a subset of the sizes = CAMERAS with those sizes
    sub = cam.fuse(cap, target=0, sizes=[48, 80])
    assert torch.allclose(sub, Cameras(densenet121_f64, "features", [48, 80])(x, targets[:, 0]),
                          atol=1e-10)
    # targets chosen from the reference logits (e.g. the top-2 classes)
    cap2 = cam.capture(x, lambda logits: logits.topk(2, dim=1).indices)
    assert torch.equal(cap2.targets, cap.logits[0].topk(2, dim=1).indices)
    assert torch.allclose(cap2.probs[:, :, 0], cap2.logits.softmax(-1).max(-1).values)
    with pytest.raises(ValueError, match="class indices"):
        cam.capture(x, torch.tensor([[0, 1000], [1, 2]]))
    with pytest.raises(ValueError, match="not captured"):
        cam.fuse(cap, sizes=[50])


def test_nonsquare_keeps_aspect_ratio_and_matches_reference(resnet18_f64):
    x = images(h=48, w=72, seed=2)
    assert scaled_shape(48, 72, 100) == (100, 150)
    assert resize_to(x, 100).shape[-2:] == (100, 150)
    assert resize_to(x, 48) is x
    fast = Cameras(resnet18_f64, "layer4", SIZES)(x)
    slow = cameras_reference(resnet18_f64, x, None, "layer4", SIZES)
    assert fast.shape == (2, 48, 72)
    assert torch.allclose(fast, slow, atol=1e-6, rtol=0)
    # tall images go through the transposed path of the fusion
    xt = x.transpose(-1, -2).contiguous()
    tall = Cameras(resnet18_f64, "layer4", SIZES)(xt)
    assert torch.allclose(tall, cameras_reference(resnet18_f64, xt, None, "layer4", SIZES), atol=1e-6)


@pytest.mark.parametrize("constant", [(), (1,), (0, 1, 2)], ids=["varying", "mixed", "constant"])
@pytest.mark.parametrize("H, W", [(17, 23), (23, 17)])
def test_fuse_maps_equals_direct_upsampling(constant, H, W):
    g = torch.Generator().manual_seed(5)
    acts = [torch.randn(2, 6, h, w, generator=g, dtype=torch.float64) for h, w in [(3, 4), (5, 7), (8, 9)]]
    grads = [torch.randn(a.shape, generator=g, dtype=torch.float64) for a in acts]
    for i in constant:  # spatially constant gradients take the rank-one route
        grads[i] = grads[i][..., :1, :1].expand_as(grads[i]).clone()
    weights = torch.tensor([[0.5, 1 / 3], [0.5, 1 / 3], [0.0, 1 / 3]], dtype=torch.float64)
    abar = sum(w.view(2, 1, 1, 1) * F.interpolate(a, (H, W), mode="bilinear", align_corners=False)
               for a, w in zip(acts, weights, strict=True))
    gbar = sum(w.view(2, 1, 1, 1) * F.interpolate(a, (H, W), mode="bilinear", align_corners=False)
               for a, w in zip(grads, weights, strict=True))
    direct = (abar * gbar).sum(1).clamp_min(0)
    for block in (1, 10_000, 64 * 2**20):  # row blocks of 1 row, a few rows, all rows
        fused = fuse_maps(acts, grads, weights, (H, W), block_bytes=block)
        assert torch.allclose(fused, direct, atol=1e-12)


def test_interpolation_matrix_is_pytorch_bilinear():
    x = torch.randn(1, 1, 5, 7, dtype=torch.float64)
    up = F.interpolate(x, (11, 13), mode="bilinear", align_corners=False)[0, 0]
    ry, rx = interpolation_matrix(5, 11, torch.float64), interpolation_matrix(7, 13, torch.float64)
    assert torch.allclose(ry @ x[0, 0] @ rx.T, up, atol=1e-14)
    assert torch.allclose(ry.sum(1), torch.ones(11, dtype=torch.float64))


# -- batching, dtypes, devices ------------------------------------------------------------
def test_batch_equals_one_by_one(resnet18_f64):
    x = images(b=3, seed=6)
    targets = [1, 2, 3]
    together = Cameras(resnet18_f64, "layer4", SIZES)(x, targets)
    alone = torch.cat([Cameras(resnet18_f64, "layer4", SIZES)(x[i : i + 1], targets[i]) for i in range(3)])
    chunked = Cameras(resnet18_f64, "layer4", SIZES, batch_size=2)(x, targets)
    assert torch.allclose(together, alone, atol=1e-10)
    assert torch.allclose(together, chunked, atol=1e-10)
    assert torch.allclose(together, cameras(resnet18_f64, x, targets, layer="layer4", sizes=SIZES))


def test_float32_close_to_float64(resnet18_f64):
    x = images(seed=7)
    m32 = torchvision.models.resnet18().eval()
    m32.load_state_dict(resnet18_f64.state_dict())
    m32.float()
    a = Cameras(m32, "layer4", SIZES)(x.float(), [0, 1])
    b = Cameras(resnet18_f64, "layer4", SIZES)(x, [0, 1])
    assert a.dtype == torch.float32
    assert (a.double() - b).abs().max() < 1e-3


def test_bfloat16_runs():
    torch.manual_seed(0)
    m = torchvision.models.resnet18().eval().to(torch.bfloat16)
    out = Cameras(m, "layer4", [64, 96])(images(b=1, dtype=torch.bfloat16))
    assert out.dtype == torch.bfloat16 and torch.isfinite(out).all()
    assert 0 <= float(out.min()) and float(out.max()) <= 1


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu(resnet18_f64):
    x = images(seed=8)
    cpu = Cameras(resnet18_f64, "layer4", SIZES)(x, [4, 5])
    gpu = Cameras(resnet18_f64.cuda(), "layer4", SIZES)(x.cuda(), [4, 5])
    resnet18_f64.cpu()
    assert gpu.device.type == "cuda"
    assert torch.allclose(gpu.cpu(), cpu, atol=1e-6)


# -- layers, hooks, in-place ops -------------------------------------------------------------
def test_densenet_activation_is_module_output_despite_inplace_relu(densenet121_f64):
    x = images(b=1, seed=9)
    with LayerCapture(densenet121_f64, "features") as cap:
        logits = cap.forward(x)
        grads = cap.gradients(logits, torch.tensor([0]))
    with torch.no_grad():
        own = densenet121_f64.features(x)
    assert (own < 0).any(), "features output has negatives; the model's in-place ReLU comes after"
    assert torch.equal(cap.activations.detach(), own)
    # gradient through the ReLU: exactly zero where the activation is negative
    assert (grads[own < 0] == 0).all() and (grads[own > 0] != 0).any()
    assert hook_count(densenet121_f64) == 0


def test_no_graph_below_layer_and_no_parameter_grads(resnet18_f64):
    x = images(b=1, seed=10)
    Cameras(resnet18_f64, "layer4", [64, 96])(x)
    assert all(p.grad is None for p in resnet18_f64.parameters())
    with LayerCapture(resnet18_f64, "layer4") as cap:
        cap.forward(x)
        assert cap.activations.grad_fn is None and cap.activations.requires_grad


def test_hooks_removed_after_exception(resnet18_f64):
    x = images(b=2)
    with pytest.raises(ValueError, match="out of range"):
        Cameras(resnet18_f64, "layer4", SIZES)(x, [0, 5000])
    assert hook_count(resnet18_f64) == 0

    class Boom(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3)
            self.fc = nn.Linear(4, 2)

        def forward(self, x):
            self.conv(x)
            raise RuntimeError("boom")

    b = Boom()
    with pytest.raises(RuntimeError, match="boom"):
        Cameras(b.eval(), "conv", [32])(images(b=1, h=32, w=32, dtype=torch.float32))
    assert hook_count(b) == 0
    assert torch.is_grad_enabled()


def test_grad_mode_restored(resnet18_f64):
    with torch.no_grad():
        Cameras(resnet18_f64, "layer4", [64])(images(b=1))
        assert not torch.is_grad_enabled()
    assert torch.is_grad_enabled()


# -- defined results and clear errors -------------------------------------------------------
def test_all_zero_map_is_zeros_not_nan():
    class Dead(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3, padding=1)
            nn.init.zeros_(self.conv.weight)
            nn.init.constant_(self.conv.bias, -1.0)
            self.act = nn.ReLU()
            self.fc = nn.Linear(4, 3)

        def forward(self, x):
            return self.fc(self.act(self.conv(x)).mean(dim=(2, 3)))

    out = Cameras(Dead().eval(), "act", [32, 48])(images(b=2, h=32, w=32, dtype=torch.float32))
    assert torch.equal(out, torch.zeros(2, 32, 32))


def test_normalize_maps():
    m = torch.stack([torch.zeros(4, 4), torch.full((4, 4), 3.0), torch.arange(16.0).view(4, 4)])
    n = normalize_maps(m)
    assert torch.equal(n[0], torch.zeros(4, 4)) and torch.equal(n[1], torch.zeros(4, 4))
    assert n[2].min() == 0 and n[2].max() == 1 and not torch.isnan(n).any()


def test_unknown_layer_lists_valid_names(resnet18_f64):
    with pytest.raises(ValueError, match=r"unknown layer 'layer5'.*layer4"):
        Cameras(resnet18_f64, "layer5")


@pytest.mark.parametrize(
    "bad, exc, match",
    [
        ([[1.0]], TypeError, "float tensor"),
        (torch.zeros(3, 64, 64, dtype=torch.float64), ValueError, "single image"),
        (torch.zeros(2, 3, 64, 64, dtype=torch.long), TypeError, "dtype"),
        (torch.full((1, 3, 64, 64), float("nan"), dtype=torch.float64), ValueError, "NaN"),
        (torch.zeros(0, 3, 64, 64, dtype=torch.float64), ValueError, "empty"),
    ],
)
def test_bad_images(resnet18_f64, bad, exc, match):
    with pytest.raises(exc, match=match):
        Cameras(resnet18_f64, "layer4", [48])(bad)


@pytest.mark.parametrize(
    "targets, exc, match",
    [
        ([1, 2, 3], ValueError, "3 targets for a batch of 2"),
        (-1, ValueError, "out of range"),
        (torch.tensor([0.5, 1.0]), TypeError, "integers"),
        ("cat", ValueError, "ambiguous"),
        ([1.5, 2], TypeError, r"ints \(class indices\) or class names"),
        (True, TypeError, "bool"),
    ],
)
def test_bad_targets(resnet18_f64, targets, exc, match):
    with pytest.raises(exc, match=match):
        Cameras(resnet18_f64, "layer4", [64])(images(), targets)
    assert hook_count(resnet18_f64) == 0


@pytest.mark.parametrize("sizes, match", [([], "at least one"), ([64, 0], "at least 8"), (["a"], "ints")])
def test_bad_sizes(resnet18_f64, sizes, match):
    with pytest.raises((ValueError, TypeError), match=match):
        Cameras(resnet18_f64, "layer4", sizes)


def test_layer_with_non_map_output(resnet18_f64):
    with pytest.raises(ValueError, match="4-d"):
        Cameras(resnet18_f64, "fc", [64])(images())
    assert hook_count(resnet18_f64) == 0


def test_layer_not_called_and_reused_layer():
    class Skip(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3)
            self.unused = nn.Conv2d(4, 4, 1)
            self.relu = nn.ReLU()
            self.fc = nn.Linear(4, 2)

        def forward(self, x):
            return self.fc(self.relu(self.relu(self.conv(x))).mean(dim=(2, 3)))

    x = images(b=1, h=32, w=32, dtype=torch.float32)
    with pytest.raises(RuntimeError, match="was not called"):
        Cameras(Skip().eval(), "unused", [32])(x)
    with pytest.raises(RuntimeError, match="more than once"):
        Cameras(Skip().eval(), "relu", [32])(x)


def test_as_targets_forms():
    assert as_targets(3, 2, 10).tolist() == [3, 3]
    assert as_targets(torch.tensor(4), 2, 10).tolist() == [4, 4]
    assert as_targets([1, 2], 2, 10).tolist() == [1, 2]
    import numpy as np

    assert as_targets(np.array([5, 6]), 2, 10).tolist() == [5, 6]


def test_mixed_precision_runs_below_the_layer_only_and_fuses_in_float32():
    torch.manual_seed(0)
    model = torchvision.models.resnet18().eval()
    x = images(b=2, h=64, w=64, dtype=torch.float32)
    ref = Cameras(model, "layer4", [64, 96])(x)
    cam = Cameras(model, "layer4", [64, 96], dtype=torch.bfloat16)
    cap = cam.capture(x)
    assert cap.activations[0].dtype == torch.float32 and cap.gradients[0].dtype == torch.float32
    got = cam.fuse(cap)[:, 0]
    assert got.dtype == torch.float32 and float((got - ref).abs().mean()) < 0.05
    assert not torch.is_autocast_enabled("cpu")  # the hook's switch does not leak out
    with pytest.raises(ValueError, match="dtype must be"):
        Cameras(model, "layer4", dtype=torch.float64)

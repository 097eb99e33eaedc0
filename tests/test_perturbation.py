"""Batched RISE and extremal perturbation (cameras.methods.perturbation) against TorchRay's
one-image runs: float64 equivalence on a seeded random CNN and a random-weight ResNet-18, the
float32 maps of ``saliency()`` unchanged, independence of the batch composition."""

from __future__ import annotations

import contextlib
import math

import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

pytest.importorskip("torchray")

from torchray.attribution import extremal_perturbation as tr_ep  # noqa: E402
from torchray.utils import EPSILON_SINGLE, SQRT_TWO_SINGLE  # noqa: E402

from cameras.core import normalize_maps  # noqa: E402
from cameras.methods import method_settings, saliency  # noqa: E402
from cameras.methods import perturbation as P  # noqa: E402


class TinyCNN(nn.Module):
    def __init__(self, classes=5, seed=0):
        super().__init__()
        torch.manual_seed(seed)
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1))
        self.fc = nn.Linear(16, classes)

    def forward(self, x):
        return self.fc(torch.flatten(self.features(x), 1))


def _imsmooth_following_dtype(tensor, sigma, stride=1, padding=0, padding_mode="constant",
                              padding_value=0):
    """TorchRay's ``imsmooth`` (zero-padding branch, the only one extremal perturbation uses)
    with its float32 filter cast to the tensor's dtype: TorchRay cannot run in float64 without it."""
    assert padding_mode == "constant" and padding_value == 0 and stride == 1 and padding == 0
    width = math.ceil(4 * sigma)
    filt = (torch.arange(-width, width + 1, dtype=torch.float32, device=tensor.device)
            / (SQRT_TWO_SINGLE * sigma + EPSILON_SINGLE))
    filt = torch.exp(-filt * filt)
    filt /= torch.sum(filt)
    filt = filt.to(tensor.dtype)
    c = tensor.shape[1]
    x = F.conv2d(tensor, filt.reshape((1, 1, -1, 1)).expand(c, -1, -1, -1), padding=(width, 0), groups=c)
    return F.conv2d(x, filt.reshape((1, 1, 1, -1)).expand(c, -1, -1, -1), padding=(0, width), groups=c)


@contextlib.contextmanager
def torchray_in(dtype):
    """Run TorchRay's code in ``dtype``: the default dtype (its masks, pyramids, maps) set to
    it and its float32 Gaussian filter cast; nothing changes for float32."""
    old, smooth = torch.get_default_dtype(), tr_ep.imsmooth
    torch.set_default_dtype(dtype)
    tr_ep.imsmooth = _imsmooth_following_dtype
    try:
        yield
    finally:
        torch.set_default_dtype(old)
        tr_ep.imsmooth = smooth


def _images(n, side, dtype=torch.float64, seed=1):
    return torch.randn(n, 3, side, side, generator=torch.Generator().manual_seed(seed)).to(dtype)


def _ep_settings(**kw):
    return method_settings("extremal_perturbation", **{"max_iter": 12, "areas": [0.05, 0.2], **kw})


def _max_diff(a, b):
    return float((a - b).abs().max())


# -- extremal perturbation ---------------------------------------------------------------------
@pytest.fixture(scope="module")
def cnn64():
    return TinyCNN().double().eval()


@pytest.mark.parametrize("kw", [
    {},  # the default setting (blur, preserve, simple reward, jitter, smooth 0.09)
    {"variant": "delete", "reward": "contrastive", "jitter": False},
    {"variant": "dual", "reward": "contrastive", "perturbation": "fade", "smooth": 0},
    {"variant": "dual", "areas": [0.1], "num_levels": 4, "step": 5, "sigma": 11},
])
def test_batched_extremal_equals_torchray_in_float64(cnn64, kw):
    x, t = _images(3, 36), torch.tensor([0, 3, 3])
    s = _ep_settings(**kw)
    got = P.extremal_batched(cnn64, x, t, s)
    with torchray_in(torch.float64):
        ref = P.extremal_torchray(cnn64, x, t, s)
    assert got.dtype == torch.float64 and got.shape == (3, 36, 36)
    assert float(ref.abs().max()) > 0.1  # not a degenerate map
    assert _max_diff(got, ref) < 1e-10, _max_diff(got, ref)


def test_batched_extremal_equals_torchray_on_resnet18_float64():
    torch.manual_seed(0)
    net = torchvision.models.resnet18(weights=None).double().eval()
    x, t = _images(2, 40, seed=3), torch.tensor([7, 321])
    s = _ep_settings(max_iter=6, areas=[0.05, 0.1, 0.2])
    got = P.extremal_batched(net, x, t, s)
    with torchray_in(torch.float64):
        ref = P.extremal_torchray(net, x, t, s)
    assert _max_diff(got, ref) < 1e-10, _max_diff(got, ref)


def test_batched_extremal_does_not_depend_on_the_batch(cnn64, monkeypatch):
    x, t = _images(4, 36, seed=5), torch.tensor([1, 2, 3, 4])
    s = _ep_settings(max_iter=8)
    together = P.extremal_batched(cnn64, x, t, s)
    monkeypatch.setattr(P, "EP_CPU_MASK_CHUNK", 1000)  # all masks in one generator call
    assert _max_diff(together, P.extremal_batched(cnn64, x, t, s)) < 1e-12
    alone = torch.cat([P.extremal_batched(cnn64, x[i:i + 1], t[i:i + 1], s) for i in range(4)])
    reordered = P.extremal_batched(cnn64, x.flip(0), t.flip(0), s).flip(0)
    assert _max_diff(together, alone) < 1e-12 and _max_diff(together, reordered) < 1e-12


def test_saliency_extremal_float32_maps_unchanged(monkeypatch):
    """saliency() runs the batched code (in chunks of EP_BATCH images); its float32 maps are
    today's (TorchRay one image at a time) to float32 tolerance; the model is left as found."""
    net = TinyCNN(seed=4).eval()
    x, t = _images(3, 32, torch.float32, seed=7), [2, 0, 4]
    s = {"max_iter": 6, "areas": [0.05, 0.2]}
    monkeypatch.setattr(P, "EP_BATCH", 2)
    got = saliency("extremal_perturbation", net, x, t, **s)
    assert all(p.requires_grad for p in net.parameters()) and not net.training
    ref = normalize_maps(P.extremal_torchray(net, x, torch.tensor(t), _ep_settings(**s)))
    assert got.dtype == torch.float32 and float(got.min()) >= 0 and float(got.max()) <= 1
    assert _max_diff(got, ref) < 1e-4, _max_diff(got, ref)


# -- RISE --------------------------------------------------------------------------------------
def _rise_settings(**kw):
    return method_settings("rise", **{"num_masks": 40, "batch_size": 16, **kw})


@pytest.mark.parametrize("scores", ["softmax", "sigmoid"])
@pytest.mark.parametrize("forward_batch", [16, 256])  # one distinct image per forward, or all
def test_batched_rise_equals_torchray_in_float64(cnn64, scores, forward_batch, monkeypatch):
    monkeypatch.setattr(P, "RISE_FORWARD_BATCH", forward_batch)
    x = _images(3, 30, seed=2)
    x = torch.cat([x, x[1:2]])  # the same image twice, with two targets
    t = torch.tensor([0, 1, 4, 2])
    s = _rise_settings(scores=scores, seed=3)  # 40 masks in chunks of 16, 16, 8
    with torchray_in(torch.float64):  # both draw their masks in the default dtype (float64)
        state = torch.get_rng_state()
        got = P.rise_batched(cnn64, x, t, s)
        assert torch.equal(torch.get_rng_state(), state)
        ref = P.rise_torchray(cnn64, x, t, s)
    assert got.dtype == torch.float64 and got.shape == (4, 30, 30)
    assert float(ref.std()) > 1e-3
    assert _max_diff(got, ref) < 1e-12, _max_diff(got, ref)


def test_rise_masks_are_torchrays():
    """Whole maps would hide a wrong shift in a flat region: compare the masks themselves,
    read back through a model whose score is the mean of the masked image."""
    class Mean(nn.Module):
        def forward(self, x):
            return x.mean(dim=(1, 2, 3))[:, None].expand(-1, 2) * torch.tensor([1.0, -1.0])

    x = torch.ones(1, 3, 23, 29)
    s = _rise_settings(num_masks=20, batch_size=7, num_cells=5, p=0.3, scores="sigmoid")
    got = P.rise_batched(Mean(), x, torch.tensor([0]), s)
    ref = P.rise_torchray(Mean(), x, torch.tensor([0]), s)
    assert _max_diff(got, ref) < 1e-6, _max_diff(got, ref)


def test_saliency_rise_float32_maps_unchanged():
    torch.manual_seed(0)
    net = torchvision.models.resnet18(weights=None, num_classes=10).eval()
    x = _images(3, 40, torch.float32, seed=9)
    for scores in ("softmax", "sigmoid"):
        s = {"num_masks": 48, "batch_size": 16, "scores": scores}
        got = saliency("rise", net, x, [1, 5, 5], **s)
        ref = normalize_maps(P.rise_torchray(net, x, torch.tensor([1, 5, 5]), _rise_settings(**s)))
        assert _max_diff(got, ref) < 1e-5, (scores, _max_diff(got, ref))


# -- CUDA (skipped without a GPU) ---------------------------------------------------------------
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_batched_paths_equal_torchray_on_cuda_in_float64():
    net = TinyCNN().double().eval().cuda()
    x, t = _images(3, 36).cuda(), torch.tensor([0, 3, 3], device="cuda")
    s = _ep_settings(max_iter=8)
    got = P.extremal_batched(net, x, t, s)
    with torchray_in(torch.float64):
        ref = P.extremal_torchray(net, x, t, s)
    assert _max_diff(got, ref) < 1e-9, _max_diff(got, ref)
    state = torch.cuda.get_rng_state()
    for scores in ("softmax", "sigmoid"):
        s = _rise_settings(scores=scores)
        with torchray_in(torch.float64):
            got, ref = P.rise_batched(net, x, t, s), P.rise_torchray(net, x, t, s)
        assert _max_diff(got, ref) < 1e-12, (scores, _max_diff(got, ref))
    assert torch.equal(torch.cuda.get_rng_state(), state)

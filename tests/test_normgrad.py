"""NormGrad and the backprop-saliency framework (cameras.methods.normgrad), meta-saliency
(cameras.methods.meta) and the authors' class sensitivity (cameras.metrics.class_sensitivity).

The reference is a plain transcription of the authors' grid scripts
(srebuffi/revisiting_saliency, ``resnet50_grid_saliency.py`` / ``vgg16_grid_saliency.py``):
:class:`AuthorsGrid` below follows their ``Extract_Aggregate`` step by step (forward hooks,
old-style module backward hooks, the loss ``-score``, the materialised outer products through
``torch.matmul`` / ``F.unfold``, bilinear upsampling, min-max, product over layers), one image
at a time, on the CPU, with the input size as a parameter instead of their 224.
"""

from __future__ import annotations

import copy
import warnings

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from cameras.core import normalize_maps
from cameras.methods import default_layers, hook_count, meta_saliency, saliency
from cameras.methods.normgrad import (
    PHASE1,
    PHASE2,
    capture_layers,
    grid_layers,
    layer_map,
    normgrad_grid,
    normgrad_maps,
)
from cameras.metrics import class_sensitivity_rebuffi, spearman_no_abs, summarize_class_sensitivity

SIZE = (64, 96)  # input (H, W) of the script tests (theirs: 224 x 224); 2 x 3 locations at stride 32
S = 64  # square inputs of the other tests


# ----------------------------------------------------------------------------------------
# the transcription of the authors' grid script
# ----------------------------------------------------------------------------------------
class AuthorsGrid:
    """``Extract_Aggregate`` of the authors' grid scripts, transcribed.

    ``extract`` is the first half of their ``__call__`` (forward through the hooked model, the
    loss ``-sum(one_hot * output)``, ``torch.autograd.grad`` w.r.t. the parameters, which fires
    the backward hooks); ``aggregate`` is the second half (phase 1, phase 2, upsampling,
    min-max, product over layers). ``skip_layer4_bias`` is the ResNet script's ``continue``.
    """

    def __init__(self, model: nn.Module, layer_names: list[str], skip_layer4_bias: bool):
        self.model = model.eval()
        for m in self.model.modules():  # their change_relus(model, False)
            if isinstance(m, nn.ReLU):
                m.inplace = False
        self.layer_names = layer_names
        self.skip = skip_layer4_bias
        self.fmap_pool: dict[str, torch.Tensor] = {}
        self.grad_pool: dict[str, torch.Tensor] = {}
        self.handles = []
        for name, module in self.model.named_modules():
            if name in layer_names:
                self.handles.append(module.register_forward_hook(self._fwd(name)))
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    self.handles.append(module.register_backward_hook(self._bwd(name)))

    def _fwd(self, key):
        def hook(module, inputs, output):
            self.fmap_pool[key] = output.detach()
        return hook

    def _bwd(self, key):
        def hook(module, grad_in, grad_out):
            self.grad_pool[key] = grad_out[0].detach()
        return hook

    def remove(self):
        for h in self.handles:
            h.remove()

    def extract(self, image: torch.Tensor, index: int) -> None:
        output = self.model(image)
        one_hot = torch.zeros(output.shape, dtype=output.dtype)
        one_hot[0, index] = 1
        loss = -torch.sum(one_hot * output)
        torch.autograd.grad(loss, list(self.model.parameters()))

    def phase1(self, name: str, phase1: str):
        """Their phase 1 for one layer: the materialised contributions ``(1, N, h, w)``."""
        target = self.fmap_pool[name].clone()
        grad = self.grad_pool[name].clone()
        C, h, w = target.shape[1], target.shape[2], target.shape[3]
        if phase1 == "conv1x1":
            out = -torch.matmul(target.permute(0, 2, 3, 1).reshape(-1, C, 1),
                                grad.permute(0, 2, 3, 1).reshape(-1, 1, grad.size(1)))
            return out.reshape(out.size(0), -1).permute(1, 0).reshape(1, -1, h, w)
        if phase1 == "conv3x3":
            unf = F.unfold(target, kernel_size=3, padding=1).view(1, C * 9, h, w)
            out = -torch.matmul(unf.permute(0, 2, 3, 1).reshape(-1, unf.size(1), 1),
                                grad.permute(0, 2, 3, 1).reshape(-1, 1, grad.size(1)))
            return out.reshape(out.size(0), -1).permute(1, 0).reshape(1, -1, h, w)
        if phase1 == "conv3x3_depthwise":
            unf = F.unfold(target, kernel_size=3, padding=1).view(1, C, 9, h, w)
            return -(unf * grad[:, :, None]).reshape(1, -1, h, w)
        if phase1 == "scaling":
            return -target * grad
        if self.skip and name == "layer4":
            return None  # their `continue`: the bias map at the end of a ResNet is constant
        return -grad

    @staticmethod
    def phase2(out: torch.Tensor, phase2: str, size: tuple[int, int]) -> torch.Tensor:
        """Their phase 2, bilinear upsampling and min-max: a ``(H, W)`` map."""
        if phase2 == "norm":
            out = torch.norm(out, 2, 1, keepdim=True)
        elif phase2 == "filter_norm":
            out = torch.norm(torch.clamp(out, min=0), 2, 1, keepdim=True)
        elif phase2 == "sum":
            out = torch.sum(out, 1, keepdim=True)
        else:
            out = torch.max(out, 1, keepdim=True)[0]
        out = F.interpolate(out, size=size, mode="bilinear", align_corners=False)
        out = out - torch.min(out)
        out = out / torch.max(out)
        return out[0, 0]

    def grid(self, size: tuple[int, int]) -> dict:
        """``{(layer or "combined", phase1, phase2): map}`` for the extracted image; the
        combination multiplies the layers' maps in the script's order (``None``: skipped)."""
        out = {}
        for p1 in PHASE1:
            contributions = {name: self.phase1(name, p1) for name in self.layer_names}
            for p2 in PHASE2:
                final = None
                for name in self.layer_names:
                    c = contributions[name]
                    m = None if c is None else self.phase2(c, p2, size)
                    out[(name, p1, p2)] = m
                    if m is not None:
                        final = m.clone() if final is None else final * m
                out[("combined", p1, p2)] = final
            del contributions
        return out


def _net(kind: str) -> nn.Module:
    torch.manual_seed(0)
    net = {"resnet50": torchvision.models.resnet50, "vgg16_bn": torchvision.models.vgg16_bn,
           "vgg16": torchvision.models.vgg16}[kind]()
    return net.double().eval()


SCRIPT_LAYERS = {
    "resnet50": ["layer2.0", "layer3.0", "layer4.0", "layer4"],  # resnet50_grid_saliency.py
    "vgg16_bn": ["features.13", "features.23", "features.33", "features.43"],  # vgg16_grid_saliency.py
}


@pytest.fixture(scope="module", params=["resnet50", "vgg16_bn"])
def scripted(request):
    """(model kind, our grid, the transcription's maps, images, targets) for one network."""
    kind = request.param
    net = _net(kind)
    layers = SCRIPT_LAYERS[kind]
    x = torch.randn(2, 3, *SIZE, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    t = torch.tensor([3, 711])
    ours = normgrad_grid(net, x, t, layers)
    ref = {}
    authors = AuthorsGrid(copy.deepcopy(net), layers, skip_layer4_bias=kind == "resnet50")
    try:
        for b in range(2):
            authors.extract(x[b : b + 1], int(t[b]))
            for key, m in authors.grid(SIZE).items():
                ref[(*key, b)] = m
    finally:
        authors.remove()
    return kind, net, ours, ref, x, t


def _constant(m):
    """Their 0/0: a map that is constant before min-max comes out all NaN."""
    return m is not None and bool(torch.isnan(m).all())


def test_every_cell_at_four_layers_and_combined_equals_the_authors_script(scripted):
    """Every (phase1, phase2) cell at the script's four layers and combined, both images.

    Where the script divides 0 by 0 (a layer map that is constant for an image: ResNet's
    ``bias`` map at ``layer4``, which the script skips by name, or a ``conv3x3_depthwise`` /
    ``max`` map on a 2 x 3 grid) ours is the all-zero map, and the combination leaves that
    layer out, as the script does for ResNet's ``layer4``.
    """
    kind, _, ours, ref, _, _ = scripted
    layers = SCRIPT_LAYERS[kind]
    checked, degenerate, partial = 0, 0, 0
    for (name, p1, p2, b), expect in ref.items():
        got = ours[(name, f"{p1}/{p2}")][b]
        if name == "combined":
            parts = [ref[(n, p1, p2, b)] for n in layers]
            kept = [m for m in parts if m is not None and not _constant(m)]
            if len(kept) < len(parts):
                partial += 1
                expect = torch.stack(kept).prod(0)
        elif expect is None or _constant(expect):
            assert float(got.abs().max()) == 0.0, (name, p1, p2, b)
            degenerate += 1
            continue
        err = float((got - expect).abs().max())
        assert got.shape == expect.shape == SIZE and err <= 1e-6, (kind, name, p1, p2, b, err)
        checked += 1
    assert checked + degenerate == 2 * len(PHASE1) * len(PHASE2) * 5
    assert degenerate <= 10 and partial <= 10, (degenerate, partial)  # the exception
    # the script's own skip: ResNet's bias map at layer4
    assert kind != "resnet50" or all(ref[("layer4", "bias", p2, b)] is None for p2 in PHASE2 for b in (0, 1))


def test_the_saliency_contract_matches_the_grid(scripted):
    kind, net, ours, ref, x, t = scripted
    layers = SCRIPT_LAYERS[kind]
    for p1, p2 in (("conv1x1", "norm"), ("conv3x3", "max"), ("scaling", "sum"), ("bias", "filter_norm")):
        one = saliency("normgrad", net, x, t, layer=layers[1], phase1=p1, phase2=p2)
        assert torch.allclose(one, normalize_maps(ours[(layers[1], f"{p1}/{p2}")]), atol=1e-10)
        comb = saliency("normgrad", net, x, t, layer=layers, phase1=p1, phase2=p2)
        expect = torch.stack([ref[("combined", p1, p2, b)] for b in range(2)])
        assert float((comb - normalize_maps(expect)).abs().max()) <= 1e-6, (p1, p2)
    assert hook_count(net) == 0


def test_grid_layers_are_the_scripts():
    assert grid_layers(torchvision.models.resnet50()) == SCRIPT_LAYERS["resnet50"]
    assert grid_layers(torchvision.models.vgg16_bn()) == SCRIPT_LAYERS["vgg16_bn"]
    assert grid_layers(torchvision.models.vgg16()) == ["features.9", "features.16", "features.23", "features.30"]
    from cameras.models import load_model

    lite = load_model("efficientnet_lite0", weights=False).model
    assert grid_layers(lite) == ["_blocks.3", "_blocks.5", "_blocks.11", "_head_act"]
    assert grid_layers(nn.Sequential(nn.Identity(), torchvision.models.resnet18()))[0] == "1.layer2.0"
    with pytest.raises(ValueError, match="no grid layers"):
        grid_layers(nn.Sequential(nn.Conv2d(3, 3, 1)))


# ----------------------------------------------------------------------------------------
# closed forms, the default cell, errors
# ----------------------------------------------------------------------------------------
def _materialised(A, G, p1, p2):
    B, C, h, w = A.shape
    if p1 in ("conv1x1", "conv3x3"):
        U = A if p1 == "conv1x1" else F.unfold(A, 3, padding=1).view(B, 9 * C, h, w)
        out = torch.einsum("bchw,bkhw->bckhw", U, G).reshape(B, -1, h, w)
    elif p1 == "conv3x3_depthwise":
        out = (F.unfold(A, 3, padding=1).view(B, C, 9, h, w) * G[:, :, None]).reshape(B, -1, h, w)
    else:
        out = A * G if p1 == "scaling" else G
    return {"sum": out.sum(1), "norm": out.norm(dim=1), "filter_norm": out.clamp_min(0).norm(dim=1),
            "max": out.amax(1)}[p2]


@pytest.mark.parametrize("p1", PHASE1)
def test_closed_forms_equal_the_materialised_outer_products(p1):
    g = torch.Generator().manual_seed(3)
    A = torch.randn(3, 6, 5, 7, dtype=torch.float64, generator=g)
    G = torch.randn(3, 6, 5, 7, dtype=torch.float64, generator=g)
    for p2 in PHASE2:
        assert torch.allclose(layer_map(A, G, p1, p2), _materialised(A, G, p1, p2), atol=1e-12), p2


def test_default_is_normgrad_at_the_stride_16_layer():
    net = torchvision.models.resnet18(num_classes=10).double().eval()
    x = torch.randn(2, 3, S, S, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    t = torch.tensor([1, 4])
    assert default_layers(net)["normgrad"] == "layer3"
    (A, G), = capture_layers(net, x, t, ["layer3"])
    up = F.interpolate((A.norm(dim=1) * G.norm(dim=1))[:, None], size=(S, S), mode="bilinear",
                       align_corners=False)[:, 0]
    assert torch.allclose(saliency("normgrad", net, x, t), normalize_maps(up), atol=1e-12)
    sel = saliency("normgrad", net, x, t, phase1="scaling", phase2="filter_norm")
    expect = normalize_maps(F.interpolate((A * G).clamp_min(0).norm(dim=1)[:, None], size=(S, S),
                                          mode="bilinear", align_corners=False)[:, 0])
    assert torch.allclose(sel, expect, atol=1e-12)  # the fork's norm_grad_selective


def test_batch_equals_one_by_one_and_layer_order_does_not_matter():
    net = torchvision.models.resnet18(num_classes=10).double().eval()
    x = torch.randn(3, 3, S, S, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    t = [2, 5, 9]
    layers = ["layer2", "layer3.1", "layer4"]
    batch = normgrad_maps(net, x, torch.tensor(t), layers, "conv3x3", "filter_norm")
    single = torch.cat([normgrad_maps(net, x[i : i + 1], torch.tensor(t[i : i + 1]), layers, "conv3x3",
                                      "filter_norm") for i in range(3)])
    assert torch.allclose(batch, single, atol=1e-12)
    rev = normgrad_maps(net, x, torch.tensor(t), layers[::-1], "conv3x3", "filter_norm")
    assert torch.allclose(batch, rev, atol=1e-12)


def test_bad_input_is_one_clear_line():
    net = torchvision.models.resnet18(num_classes=10).eval()
    x = torch.randn(1, 3, 32, 32)
    with pytest.raises(ValueError, match="phase1 must be one of"):
        saliency("normgrad", net, x, 0, phase1="conv5x5")
    with pytest.raises(ValueError, match="phase2 must be one of"):
        saliency("normgrad", net, x, 0, phase2="mean")
    with pytest.raises(ValueError, match="at least one layer"):
        saliency("normgrad", net, x, 0, layer=[])
    with pytest.raises(ValueError, match="twice"):
        saliency("normgrad", net, x, 0, layer=["layer3", "layer3"])
    with pytest.raises(ValueError, match="unknown layer"):
        saliency("normgrad", net, x, 0, layer=["layer3", "layer9"])
    assert hook_count(net) == 0


def test_inplace_relu_after_the_layer_does_not_change_the_activations():
    torch.manual_seed(0)
    net = torchvision.models.vgg11(num_classes=5).double().eval()
    x = torch.randn(1, 3, S, S, dtype=torch.float64)
    # features.6 is a conv whose output the next (in-place) ReLU overwrites
    (A, G), = capture_layers(net, x, torch.tensor([1]), ["features.6"])
    assert (A < 0).any()  # the conv's own output, not the ReLU's
    with torch.no_grad():
        ref = net.features[:7](x)
    assert torch.equal(A, ref)
    assert np.isfinite(G.numpy()).all()


# ----------------------------------------------------------------------------------------
# meta-saliency
# ----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def small():
    torch.manual_seed(0)
    net = torchvision.models.resnet18(num_classes=10).double().eval()
    x = torch.randn(3, 3, 48, 48, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    return net, x


def _state(net):
    return {k: v.detach().clone() for k, v in net.state_dict().items()}


def _same_state(net, before):
    now = net.state_dict()
    return set(now) == set(before) and all(torch.equal(now[k], before[k]) for k in before)


@pytest.mark.parametrize("method,kw", [
    ("normgrad", {}),
    ("normgrad", {"layer": ["layer2", "layer3", "layer4"], "phase1": "conv3x3_depthwise", "phase2": "max"}),
    ("gradcam", {}), ("hirescam", {"layer": "layer3"}), ("layercam", {}), ("gradcam++", {}),
])
def test_meta_batched_equals_looped_and_restores_the_weights(small, method, kw):
    net, x = small
    before = _state(net)
    t = [1, 4, 7]
    a = meta_saliency(method, net, x, t, lr=2.5e-3, mode="vmap", **kw)
    assert _same_state(net, before)
    b = meta_saliency(method, net, x, t, lr=2.5e-3, mode="loop", **kw)
    assert _same_state(net, before)
    assert float((a - b).abs().max()) <= 1e-6
    plain = saliency(method, net, x, t, **kw)
    assert float((a - plain).abs().max()) > 1e-3  # the step changed the maps
    zero = meta_saliency(method, net, x, t, lr=0.0, mode="vmap", **kw)
    assert float((zero - plain).abs().max()) <= 1e-6  # lr = 0 is the plain method


def test_meta_loop_runs_any_method_and_its_step_is_the_authors(small):
    net, x = small
    before = _state(net)
    m = meta_saliency("guided_backprop", net, x[:2], [2, 3], lr=1e-3)  # no vmap form: the loop
    assert m.shape == (2, 48, 48) and _same_state(net, before)
    # one image: the authors' meta_saliency (torch.optim.SGD on F.cross_entropy, eval mode)
    ref = copy.deepcopy(net)
    opt = torch.optim.SGD(ref.parameters(), lr=1e-3)
    opt.zero_grad()
    F.cross_entropy(ref(x[:1]), torch.tensor([2])).backward()
    opt.step()
    expect = saliency("guided_backprop", ref, x[:1], 2)
    assert torch.allclose(m[:1], expect, atol=1e-8)


class Boom(nn.Module):
    def __init__(self, net):
        super().__init__()
        self.net, self.calls, self.at = net, 0, None

    def forward(self, x):
        self.calls += 1
        if self.at is not None and self.calls >= self.at:
            raise RuntimeError("boom")
        return self.net(x)


@pytest.mark.parametrize("mode,at", [("loop", 2), ("loop", 3), ("loop", 5), ("vmap", 2), ("vmap", 3)])
def test_meta_restores_the_weights_bit_identically_when_the_method_raises(small, mode, at):
    net, x = small
    model = Boom(copy.deepcopy(net)).eval()
    model.net.layer2.train()  # a mixed mode and a frozen parameter must come back too
    model.net.fc.weight.requires_grad_(False)
    saliency("center", model, x[:1], 0)  # caches the number of classes (one forward)
    before = _state(model)
    flags = [p.requires_grad for p in model.parameters()], [m.training for m in model.modules()]
    model.calls, model.at = 0, at
    with pytest.raises(RuntimeError, match="boom"):
        meta_saliency("normgrad", model, x, [1, 2, 3], lr=1.0, layer="net.layer3", mode=mode)
    model.at = None
    assert _same_state(model, before)
    assert flags == ([p.requires_grad for p in model.parameters()], [m.training for m in model.modules()])
    assert hook_count(model) == 0 and all(p.grad is None for p in model.parameters())


def test_meta_bad_input(small):
    net, x = small
    with pytest.raises(ValueError, match="lr must be"):
        meta_saliency("normgrad", net, x, 1, lr=-1)
    with pytest.raises(ValueError, match="mode must be"):
        meta_saliency("normgrad", net, x, 1, mode="fast")
    with pytest.raises(ValueError, match="no batched meta-saliency for 'rise'"):
        meta_saliency("rise", net, x, 1, mode="vmap")
    with pytest.raises(ValueError, match="does not take setting"):
        meta_saliency("gradcam", net, x, 1, phase1="bias")


# ----------------------------------------------------------------------------------------
# the authors' class sensitivity
# ----------------------------------------------------------------------------------------
def test_spearman_no_abs_is_scipys_and_nan_for_constant_maps():
    from scipy.stats import spearmanr

    g = torch.Generator().manual_seed(6)
    a = torch.rand(4, 7, 9, generator=g).round(decimals=1)  # ties
    b = torch.rand(4, 7, 9, generator=g) - 0.5  # signed: no abs
    ours = spearman_no_abs(a, b)
    for i in range(4):
        assert abs(float(ours[i]) - spearmanr(a[i].ravel(), b[i].ravel())[0]) < 1e-12
    c = a.clone()
    c[1] = 0.3
    assert torch.isnan(spearman_no_abs(c, b)[1]) and not torch.isnan(spearman_no_abs(c, b)[0])


def test_class_sensitivity_rebuffi_rows_and_summary(small):
    net, x = small
    df = class_sensitivity_rebuffi(["normgrad", "center", "gradcam"], net, x, layer="layer3")
    assert list(df["method"].unique()) == ["normgrad", "center", "gradcam"] and len(df) == 9
    with torch.no_grad():
        p = net(x).softmax(1)
    assert (df["most"].to_numpy() == np.tile(p.argmax(1).numpy(), 3)).all()
    assert (df["least"].to_numpy() == np.tile(p.argmin(1).numpy(), 3)).all()
    assert (df[df["method"] == "center"]["class_spearman"] == 1).all()  # class-agnostic
    s = summarize_class_sensitivity(df)
    assert list(s["method"]) == ["normgrad", "center", "gradcam"] and (s["n"] + s["dropped"] == 3).all()
    row = s.set_index("method").loc["normgrad"]
    vals = df[df["method"] == "normgrad"]["class_spearman"].dropna()
    assert row["mean"] == pytest.approx(vals.mean()) and row["ci_low"] <= row["mean"] <= row["ci_high"]
    meta = class_sensitivity_rebuffi("normgrad", net, x, layer="layer3", meta_lr=2.5e-3)
    assert not np.allclose(meta["class_spearman"], vals.to_numpy())


# ----------------------------------------------------------------------------------------
# the grid's extras and meta form, and the summaries
# ----------------------------------------------------------------------------------------
def test_grid_extras_and_meta_grid_are_the_registered_methods(small):
    net, x = small
    t = torch.tensor([1, 4, 7])
    layers = ["layer2", "layer4"]
    g = normgrad_grid(net, x, t, layers, extra=("gradcam", "hirescam", "layercam", "gradcam++"))
    for m in ("gradcam", "hirescam", "layercam", "gradcam++"):
        for lay in layers:
            assert torch.allclose(normalize_maps(g[(lay, m)]), saliency(m, net, x, t, layer=lay), atol=1e-6), (m, lay)
    gm = normgrad_grid(net, x, t, layers, phase1=["conv3x3"], phase2=["sum"], extra=("gradcam",), meta_lr=2.5e-3)
    assert set(gm) == {("layer2", "conv3x3/sum"), ("layer4", "conv3x3/sum"), ("combined", "conv3x3/sum"),
                       ("layer2", "gradcam"), ("layer4", "gradcam")}
    ref = meta_saliency("normgrad", net, x, t, lr=2.5e-3, layer=layers, phase1="conv3x3", phase2="sum", mode="loop")
    assert float((normalize_maps(gm[("combined", "conv3x3/sum")]) - ref).abs().max()) <= 1e-6
    ref = meta_saliency("gradcam", net, x, t, lr=2.5e-3, layer="layer2", mode="loop")
    assert float((normalize_maps(gm[("layer2", "gradcam")]) - ref).abs().max()) <= 1e-6
    with pytest.raises(ValueError, match="extra must name"):
        normgrad_grid(net, x, t, layers, extra=("rise",))


def test_a_layer_at_input_resolution_is_not_changed_in_place():
    torch.manual_seed(5)
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 6, 3, stride=2, padding=1), nn.ReLU(),
                        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(6, 3)).double().eval()
    x = torch.randn(2, 3, 12, 12, dtype=torch.float64)
    caps = capture_layers(net, x, torch.tensor([0, 2]), ["1", "3"])
    raw = [layer_map(A, G, "scaling", "sum") for A, G in caps]
    keep = [r.clone() for r in raw]
    from cameras.methods.normgrad import combine_maps

    out = combine_maps(raw, (12, 12))
    assert all(torch.equal(a, b) for a, b in zip(raw, keep, strict=True))
    up = F.interpolate(raw[1][:, None], size=(12, 12), mode="bilinear", align_corners=False)[:, 0]
    assert torch.allclose(out, normalize_maps(raw[0]) * normalize_maps(up), atol=1e-12)


def test_grid_arrays_gradient_share_and_tables(small):
    from cameras.methods.meta import compare_modes
    from cameras.methods.normgrad import gradient_mean_share, grid_arrays
    from cameras.metrics import (
        class_sensitivity_table,
        grid_class_sensitivity,
        grid_class_sensitivity_table,
    )

    net, x = small
    g = normgrad_grid(net, x[:2], torch.tensor([1, 2]), ["layer3"], phase1=["bias"], phase2=["norm"])
    a = grid_arrays(g, ["a", "b"])
    assert set(a) == {"a|layer3|bias/norm", "b|layer3|bias/norm"} and a["a|layer3|bias/norm"].shape == (24, 24)
    (A, G), = capture_layers(net, x, torch.tensor([1, 2, 3]), ["layer4"])
    assert torch.allclose(gradient_mean_share(G), torch.ones(3, dtype=G.dtype))  # feeds the average pool
    assert (gradient_mean_share(torch.randn(2, 5, 6, 6)) < 0.5).all()
    df = grid_class_sensitivity(net, x, ["layer3", "layer4"], phase1=["conv1x1"], phase2=["norm"], extra=("gradcam",))
    t = grid_class_sensitivity_table(df, ["layer3", "layer4", "combined"], ["conv1x1/norm", "gradcam"])
    assert t.shape == (2, 3) and np.isnan(t.loc["gradcam", "combined"])
    rows = pd.DataFrame({"method": ["m"] * 6, "layer": ["l"] * 6, "image": [0, 1, 2] * 2,
                         "meta_lr": [0.0] * 3 + [0.1] * 3, "class_spearman": [0.9, 0.8, np.nan, 0.5, 0.4, 0.3]})
    ct = class_sensitivity_table(rows).iloc[0]
    assert ct["mean_plain"] == pytest.approx(0.85) and ct["mean_meta"] == pytest.approx(0.4)
    assert ct["n"] == 3 and ct["dropped"] == 1 and ct["change"].startswith("-0.40")
    r = compare_modes("normgrad", net, x[:2], [1, 2], lr=1e-3)
    assert r["max_abs_diff"] < 1e-6 and r["vmap"] > 0 and r["loop"] > 0

"""The common saliency API (cameras.methods): every method, targets, batches, hooks, layers."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from cameras.core import DEFAULT_SIZES, normalize_maps
from cameras.methods import (
    PAPER_METHODS,
    center_map,
    default_layers,
    hook_count,
    info,
    method_settings,
    names,
    saliency,
)
from cameras.methods.cam import (
    gradcampp_map,
    hirescam_map,
    layer_activations_gradients,
    layercam_map,
    normgrad_map,
    upsample,
)

EXPECTED_NAMES = [
    "cameras", "gradcam", "normgrad", "gradient", "deconvnet", "guided_backprop",
    "excitation_backprop", "contrastive_excitation_backprop", "rise", "extremal_perturbation",
    "center", "hirescam", "layercam", "gradcam++",
]
# cheap settings for tests (the defaults are the paper's and take minutes per image)
FAST = {
    "cameras": {"sizes": [48, 64]},
    "rise": {"num_masks": 8, "batch_size": 8},
    "extremal_perturbation": {"max_iter": 2, "areas": [0.1]},
}
H = 48


@pytest.fixture(scope="module")
def resnet():
    torch.manual_seed(0)
    return torchvision.models.resnet18(num_classes=10).eval()


@pytest.fixture(scope="module")
def x():
    return torch.randn(3, 3, H, H, generator=torch.Generator().manual_seed(1))


class TinyVGG(nn.Module):
    """VGG-shaped network (features / avgpool / classifier with relu7 at classifier.4)."""

    def __init__(self, classes=6):
        super().__init__()
        torch.manual_seed(2)
        c = [3, 8, 8, 16, 16, 16]
        layers = []
        for i in range(5):
            layers += [nn.Conv2d(c[i], c[i + 1], 3, padding=1), nn.ReLU(inplace=True),
                       nn.MaxPool2d(2)]
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(
            nn.Linear(16, 32), nn.ReLU(True), nn.Dropout(), nn.Linear(32, 32), nn.ReLU(True),
            nn.Dropout(), nn.Linear(32, classes))

    def forward(self, x):
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


def run(method, model, images, targets=None, **kw):
    return saliency(method, model, images, targets, **{**FAST.get(method, {}), **kw})


def model_state(model):
    return (
        hook_count(model),
        [p.requires_grad for p in model.parameters()],
        [m.training for m in model.modules()],
        [getattr(m, "inplace", None) for m in model.modules()],
        [(n, type(m)) for n, m in model.named_modules()],
    )


# -- the registry ----------------------------------------------------------------------
def test_names_are_exactly_the_required_ones():
    assert names() == EXPECTED_NAMES
    assert set(PAPER_METHODS) <= set(names())


def test_unknown_method_lists_valid_names(resnet, x):
    with pytest.raises(ValueError) as err:
        saliency("gradcamm", resnet, x)
    msg = str(err.value)
    assert "gradcamm" in msg and "'gradcam'" in msg  # suggestion
    for n in EXPECTED_NAMES:
        assert n in msg


def test_unknown_setting_is_a_clear_error(resnet, x):
    with pytest.raises(ValueError, match=r"'gradcam' does not take setting\(s\) num_masks"):
        saliency("gradcam", resnet, x, num_masks=3)
    with pytest.raises(ValueError, match="it takes: num_masks"):
        saliency("rise", resnet, x, max_iter=3)
    with pytest.raises(ValueError, match="no layer"):
        saliency("rise", resnet, x, layer="layer4", num_masks=4)
    with pytest.raises(ValueError, match="num_masks must be a positive int"):
        method_settings("rise", num_masks=0)


def test_paper_defaults_are_recorded():
    assert method_settings("rise")["num_masks"] == 8000
    assert method_settings("extremal_perturbation")["max_iter"] == 800
    assert method_settings("extremal_perturbation")["areas"] == [0.025, 0.05, 0.1, 0.2]
    assert method_settings("cameras")["sizes"] == list(DEFAULT_SIZES)
    assert method_settings("gradient")["smooth"] == 0.02
    assert method_settings("rise", num_masks=50)["num_masks"] == 50
    # settings are fresh copies: changing one does not change the defaults
    s = method_settings("extremal_perturbation")
    s["areas"].append(0.5)
    assert method_settings("extremal_perturbation")["areas"] == [0.025, 0.05, 0.1, 0.2]


# -- every method: shape, range, NaN, hooks --------------------------------------------
@pytest.mark.parametrize("method", EXPECTED_NAMES)
def test_every_method_shape_range_and_clean_model(method, resnet, x):
    before = model_state(resnet)
    relu, conv2d = torch.relu, F.conv2d
    maps = run(method, resnet, x, [1, 2, 3])
    assert maps.shape == (3, H, H)
    assert maps.dtype == x.dtype
    assert not torch.isnan(maps).any()
    assert float(maps.min()) >= 0 and float(maps.max()) <= 1
    assert float(maps.max()) == 1.0  # not a degenerate map on this net
    assert model_state(resnet) == before
    assert torch.relu is relu and F.conv2d is conv2d  # TorchRay's patches are gone


@pytest.mark.parametrize("method", [m for m in EXPECTED_NAMES if not info(m).own_top1])
def test_targets_none_int_list_tensor(method, resnet, x):
    xx = x[:2]
    top1 = resnet(xx).argmax(1)
    a = run(method, resnet, xx, None)
    b = run(method, resnet, xx, top1.tolist())
    assert torch.allclose(a, b, atol=1e-5)
    if info(method).batched:  # the rest is the same code path for every method
        c = run(method, resnet, xx, top1)
        d = run(method, resnet, xx, 4)
        e = run(method, resnet, xx, [4, 4])
        assert torch.allclose(b, c, atol=1e-5) and torch.allclose(d, e, atol=1e-5)


def test_targets_change_the_map(resnet, x):
    for method in ("gradcam", "hirescam", "excitation_backprop", "rise"):
        a = run(method, resnet, x[:1], 1)
        b = run(method, resnet, x[:1], 7)
        assert (a - b).abs().max() > 1e-3, method


def test_bad_targets(resnet, x):
    with pytest.raises(ValueError, match="out of range"):
        saliency("gradcam", resnet, x, [1, 2, 10])
    with pytest.raises(ValueError, match="3 images"):
        saliency("gradcam", resnet, x, [1, 2])
    with pytest.raises(TypeError):
        saliency("gradcam", resnet, x, 1.5)


@pytest.mark.parametrize("method", [m for m in EXPECTED_NAMES if info(m).deterministic])
def test_batch_equals_one_by_one(method, resnet, x):
    # float64 where the method allows it: a random-weight ResNet's float32 input gradients
    # differ by ~3 % between batch sizes (different conv kernels), which says nothing here
    float32_only = method in ("rise", "extremal_perturbation")
    net = resnet if float32_only else copy.deepcopy(resnet).double()
    xx = x if float32_only else x.double()
    t = [3, 5, 8]
    batch = run(method, net, xx, t)
    single = torch.cat([run(method, net, xx[i : i + 1], t[i]) for i in range(3)])
    tol = 1e-4 if float32_only else 1e-6
    assert torch.allclose(batch, single, atol=tol), (batch - single).abs().max()


class Boom(nn.Module):
    """A ResNet that raises on the ``at``-th forward call (counting from 1)."""

    def __init__(self, net):
        super().__init__()
        self.net = net
        self.at = None
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        out = self.net(x)
        if self.at is not None and self.calls >= self.at:
            raise RuntimeError("boom")
        return out


# an error in the first forward pass for every method; in the second one for the methods that
# run the model more than once (CAMERAS' second size, cMWP's second pass, RISE, EP)
@pytest.mark.parametrize(
    "method,at",
    [(m, 1) for m in EXPECTED_NAMES]
    + [(m, 2) for m in ("cameras", "contrastive_excitation_backprop", "rise",
                        "extremal_perturbation")],
)
def test_model_restored_after_an_error(method, at, resnet):
    model = Boom(resnet).eval()
    xx = torch.randn(1, 3, H, H)
    saliency("center", model, xx, 0)  # caches the number of classes
    layers = default_layers(resnet)
    layer = layers.get(method)
    if isinstance(layer, str):
        layer = "net." + layer
    elif isinstance(layer, tuple):
        layer = tuple("net." + v for v in layer)
    before = model_state(model)
    weights = [p.detach().clone() for p in model.parameters()]
    relu, conv2d, linear = torch.relu, F.conv2d, F.linear
    model.calls, model.at = 0, at
    try:
        saliency(method, model, xx, 3, layer=layer, **FAST.get(method, {}))
    except RuntimeError as err:
        assert "boom" in str(err)
    else:  # methods with fewer forward calls than `at`
        assert model.calls < at
    model.at = None
    assert model_state(model) == before
    assert all(torch.equal(a, b) for a, b in zip(weights, model.parameters(), strict=True))
    assert torch.relu is relu and F.conv2d is conv2d and F.linear is linear
    for m in model.modules():
        assert not m._forward_hooks and not m._forward_pre_hooks and not m._backward_hooks


def test_training_mode_and_requires_grad_restored(resnet, x):
    resnet.train()
    resnet.fc.weight.requires_grad_(False)
    try:
        for method in ("gradcam", "excitation_backprop", "extremal_perturbation", "hirescam"):
            run(method, resnet, x[:1], 1)
            assert resnet.training and resnet.layer1[0].bn1.training
            assert not resnet.fc.weight.requires_grad and resnet.fc.bias.requires_grad
    finally:
        resnet.eval()
        resnet.fc.weight.requires_grad_(True)


# -- CAM-type methods: formulas ----------------------------------------------------------
# layer4 feeds global average pooling (spatially constant G: HiResCAM = Grad-CAM there);
# layer3's gradients vary over space
@pytest.mark.parametrize("layer,grid", [("layer4", 2), ("layer3", 3)])
def test_hirescam_and_single_size_cameras_differ_only_in_where_upsampling_happens(layer, grid):
    torch.manual_seed(0)
    net = torchvision.models.resnet18(num_classes=10).eval().double()
    xx = torch.randn(2, 3, H, H, dtype=torch.float64)
    t = torch.tensor([2, 7])
    A, G = layer_activations_gradients(net, xx, t, layer)
    assert A.shape[-2:] == (grid, grid)  # far below the input's 48 x 48
    hires = saliency("hirescam", net, xx, t, layer=layer)
    cam1 = saliency("cameras", net, xx, t, layer=layer, sizes=[H])
    up = lambda z: F.interpolate(z, size=(H, H), mode="bilinear", align_corners=False)  # noqa: E731
    expect_hires = normalize_maps(up((A * G).sum(1, keepdim=True).clamp_min(0))[:, 0])
    expect_cam = normalize_maps((up(A) * up(G)).sum(1).clamp_min(0))
    assert torch.allclose(hires, expect_hires, atol=1e-10)
    assert torch.allclose(cam1, expect_cam, atol=1e-8)
    # the order of upsampling and product matters at low resolution
    assert (hires - cam1).abs().max() > 0.05


class FullResNet(nn.Module):
    """A net whose captured layer ``body`` keeps the input's spatial size."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(5)
        self.body = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(),
                                  nn.Conv2d(8, 8, 3, padding=1))
        self.head = nn.Sequential(nn.ReLU(), nn.Conv2d(8, 16, 3, padding=1), nn.ReLU())
        self.fc = nn.Linear(16, 5)

    def forward(self, x):
        return self.fc(self.head(self.body(x)).mean((2, 3)))


def test_hirescam_equals_cameras_when_the_layer_has_input_resolution():
    net = FullResNet().double().eval()
    xx = torch.randn(2, 3, 24, 24, dtype=torch.float64)
    a = saliency("hirescam", net, xx, [1, 3], layer="body")
    b = saliency("cameras", net, xx, [1, 3], layer="body", sizes=[24])
    assert a.max() == 1
    assert torch.allclose(a, b, atol=1e-10)


def test_gradcam_is_torchray_formula(resnet, x):
    t = torch.tensor([1, 2, 3])
    A, G = layer_activations_gradients(resnet, x, t, "layer4")
    expect = normalize_maps(upsample((G.mean((2, 3), keepdim=True) * A).sum(1).clamp_min(0), (H, H)))
    assert torch.allclose(saliency("gradcam", resnet, x, t), expect, atol=1e-5)


def test_layer_maps_match_pytorch_grad_cam(resnet, x):
    from pytorch_grad_cam import GradCAMPlusPlus, HiResCAM, LayerCAM

    t = torch.tensor([1, 2, 3])
    A, G = layer_activations_gradients(resnet, x, t, "layer4")
    a, g = A.double().numpy(), G.double().numpy()
    layer = [resnet.layer4]
    ref_hires = HiResCAM(resnet, layer).get_cam_image(x, layer[0], None, a, g, False)
    ref_layer = LayerCAM(resnet, layer).get_cam_image(x, layer[0], None, a, g, False)
    w = GradCAMPlusPlus(resnet, layer).get_cam_weights(x, layer, None, a, g)
    ref_pp = (w[:, :, None, None] * a).sum(1)
    # pytorch-grad-cam applies the ReLU afterwards (np.maximum(cam, 0))
    for ours, ref in ((hirescam_map, ref_hires), (layercam_map, ref_layer), (gradcampp_map, ref_pp)):
        assert np.allclose(ours(A.double(), G.double()).numpy(), np.maximum(ref, 0), atol=1e-8)
    assert hook_count(resnet) == 0


def test_normgrad_is_the_norm_of_a_virtual_identity_convs_weight_gradient(resnet, x):
    t = torch.tensor([1, 2, 3])
    A, G = layer_activations_gradients(resnet, x, t, "layer4")
    # per-location outer products g_u a_u^T; their Frobenius norms are the map
    outer = torch.einsum("bkhw,blhw->bhwkl", G, A)
    assert torch.allclose(normgrad_map(A, G), outer.flatten(-2).norm(dim=-1), rtol=1e-4, atol=1e-6)
    # and their sum over locations is the gradient of a real 1x1 identity conv after layer4
    ident = nn.Conv2d(512, 512, 1, bias=False)
    with torch.no_grad():
        ident.weight.copy_(torch.eye(512).view(512, 512, 1, 1))
    h = resnet.layer4.register_forward_hook(lambda m, i, o: ident(o))
    try:
        score = resnet(x).gather(1, t.view(-1, 1)).sum()
        (gw,) = torch.autograd.grad(score, ident.weight)
    finally:
        h.remove()
    assert torch.allclose(gw[:, :, 0, 0], outer.sum((0, 1, 2)), rtol=1e-3, atol=1e-5)
    expect = normalize_maps(upsample(normgrad_map(A, G), (H, H)))
    assert torch.allclose(saliency("normgrad", resnet, x, t, layer="layer4"), expect, atol=1e-5)


# -- TorchRay pointwise methods ----------------------------------------------------------
def test_gradient_reduces_channels_like_torchray(resnet, x):
    xx = x.clone().requires_grad_(True)
    score = resnet(xx).gather(1, torch.tensor([[1], [2], [3]])).sum()
    (g,) = torch.autograd.grad(score, xx)
    expect = normalize_maps(g.abs().amax(dim=1))
    ours = saliency("gradient", resnet, x, [1, 2, 3], smooth=0)
    assert torch.allclose(ours, expect, atol=1e-5)
    smoothed = saliency("gradient", resnet, x, [1, 2, 3])
    assert (smoothed - ours).abs().max() > 0.05  # smooth=0.02 is on by default


def test_guided_backprop_differs_from_gradient(resnet, x):
    g = saliency("gradient", resnet, x, 1, smooth=0)
    gb = saliency("guided_backprop", resnet, x, 1, smooth=0)
    dc = saliency("deconvnet", resnet, x, 1, smooth=0)
    assert (g - gb).abs().max() > 0.05 and (gb - dc).abs().max() > 0.05


def test_relu6_networks_get_the_guided_rule_and_ebp_refuses_them():
    from cameras.models import load_model

    lm = load_model("efficientnet_lite0", weights=False)
    net = lm.model.eval()
    xx = torch.randn(1, 3, H, H, generator=torch.Generator().manual_seed(3))
    before = model_state(net)
    g = saliency("gradient", net, xx, 1, smooth=0)
    gb = saliency("guided_backprop", net, xx, 1, smooth=0)
    assert (g - gb).abs().max() > 0.05  # the ReLU6 rule changed the backward pass
    assert model_state(net) == before
    with pytest.raises(ValueError, match="strict=False"):
        saliency("excitation_backprop", net, xx, 1)
    with pytest.raises(ValueError, match="ReLU6"):
        saliency("contrastive_excitation_backprop", net, xx, 1)
    m = saliency("excitation_backprop", net, xx, 1, strict=False)
    assert m.shape == (1, H, H) and not torch.isnan(m).any()
    assert model_state(net) == before
    cam = saliency("gradcam", net, xx, 1)  # default layer _head_act
    assert cam.shape == (1, H, H)


def test_guided_backprop_refuses_unknown_activations():
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.SiLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                        nn.Linear(4, 3)).eval()
    xx = torch.randn(1, 3, 16, 16)
    with pytest.raises(ValueError, match="SiLU"):
        saliency("guided_backprop", net, xx, 0)
    assert saliency("guided_backprop", net, xx, 0, strict=False).shape == (1, 16, 16)
    assert saliency("gradient", net, xx, 0).shape == (1, 16, 16)
    with pytest.raises(ValueError, match="no default layer"):
        saliency("gradcam", net, xx, 0)
    assert saliency("gradcam", net, xx, 0, layer="1").shape == (1, 16, 16)


def test_ebp_and_cmwp_on_a_vgg_shaped_net():
    net = TinyVGG().eval()
    xx = torch.randn(2, 3, H, H, generator=torch.Generator().manual_seed(4))
    table = default_layers("vgg16")
    assert table["excitation_backprop"] == "features.23"  # TorchRay: pool4
    assert table["contrastive_excitation_backprop"] == ("features.23", "classifier.4")
    layer = "features.8"  # this net's second-to-last pool ... any pooled layer
    e = saliency("excitation_backprop", net, xx, [0, 1], layer=layer)
    c1 = saliency("contrastive_excitation_backprop", net, xx, [0, 1], layer=(layer, "classifier.4"))
    c2 = saliency("contrastive_excitation_backprop", net, xx, [0, 1], layer=layer,
                  contrast_layer="classifier.4")
    assert torch.equal(c1, c2)
    assert (e - c1).abs().max() > 1e-3
    assert hook_count(net) == 0


def test_ebp_resnet_patch_is_undone(resnet, x):
    fwd = {id(m): m.forward for m in resnet.modules()}
    run("contrastive_excitation_backprop", resnet, x[:1], 1)
    for m in resnet.modules():
        assert "skip" not in m._modules
        assert "forward" not in m.__dict__
        assert m.forward.__func__ is fwd[id(m)].__func__


# -- perturbation methods and the center baseline ----------------------------------------
def test_rise_is_seeded_and_shares_runs_between_identical_images(resnet, x):
    a = run("rise", resnet, x[:1], 2)
    b = run("rise", resnet, x[:1], 2)
    c = run("rise", resnet, x[:1], 2, seed=1)
    assert torch.equal(a, b) and (a - c).abs().max() > 1e-3
    both = run("rise", resnet, x[:1].expand(2, -1, -1, -1), [2, 6])
    assert torch.allclose(both[0], a[0], atol=1e-6)
    assert torch.allclose(both[1], run("rise", resnet, x[:1], 6)[0], atol=1e-6)


def test_perturbation_methods_need_float32(resnet, x):
    net = torchvision.models.resnet18(num_classes=10).eval().double()
    with pytest.raises(TypeError, match="float32"):
        saliency("rise", net, x.double(), 1, num_masks=4)


def test_center_peaks_at_torchrays_center_point():
    # even sides: one peak at (H/2, W/2); an odd side: the two pixels around the float point tie
    m = center_map(64, 64)
    assert divmod(int(m[0].argmax()), 64) == (32, 32) and (m[0] == m[0].max()).sum() == 1
    m = center_map(50, 81)  # v0 = 25, u0 = 40.5
    peaks = (m[0] == m[0].max()).nonzero().tolist()
    assert peaks == [[25, 40], [25, 41]]


# -- default layers ------------------------------------------------------------------------
def test_default_layer_table():
    vgg = default_layers("vgg16")
    assert vgg["gradcam"] == "features.29" and vgg["cameras"] == "features.29"
    r = default_layers("resnet50")
    assert r["gradcam"] == "layer4" and r["excitation_backprop"] == "layer3"
    assert r["contrastive_excitation_backprop"] == ("layer3", "avgpool")
    assert r["gradient"] is None and r["rise"] is None
    e = default_layers("efficientnet_lite0")
    assert e["gradcam"] == "_head_act" and e["excitation_backprop"] == "_blocks.10"
    assert default_layers("densenet121")["cameras"] == "features"
    assert default_layers("inception_v3")["gradcam"] == "Mixed_7c"
    with pytest.raises(ValueError, match="known"):
        default_layers("alexnet")
    assert set(vgg) == set(EXPECTED_NAMES)
    # NormGrad: the end of the penultimate stage (the CAMERAS paper's Table 1 NormGrad row
    # equals the NormGrad authors' pointing accuracy at VGG16 features.22 / ResNet-50 layer3)
    assert vgg["normgrad"] == "features.22" and r["normgrad"] == "layer3"
    assert default_layers("vgg16_bn")["normgrad"] == "features.32"
    assert default_layers("densenet121")["normgrad"] == "features.denseblock3"
    assert default_layers("inception_v3")["normgrad"] == "Mixed_6e"
    assert e["normgrad"] == "_blocks.10" and default_layers("efficientnet_lite2")["normgrad"] == "_blocks.14"


@pytest.mark.parametrize("arch,size,grid,last", [
    ("vgg16", 224, 28, 14), ("resnet50", 224, 14, 7), ("densenet121", 224, 14, 7),
    ("inception_v3", 299, 17, 8), ("efficientnet_lite0", 224, 14, 7), ("efficientnet_lite1", 240, 15, 8),
    ("efficientnet_lite2", 260, 17, 9)])
def test_normgrad_layer_ends_the_penultimate_stage(arch, size, grid, last):
    """The name table equals the module table, and NormGrad's layer is on the grid one step
    finer than the last convolutional block's (the end of the penultimate stage: VGG16's
    relu4_3 at stride 8, the others' at stride 16)."""
    from cameras.hooks import resolve_layer
    from cameras.models import get_spec

    net = get_spec(arch).build(False)[0].eval()
    table = default_layers(net)
    assert table == default_layers(arch)
    shapes = {}
    hooks = [resolve_layer(net, table[m]).register_forward_hook(
        lambda mod, i, o, m=m: shapes.update({m: tuple(o.shape[-2:])})) for m in ("normgrad", "gradcam")]
    try:
        with torch.no_grad():
            net(torch.zeros(1, 3, size, size))
    finally:
        for h in hooks:
            h.remove()
    assert shapes == {"normgrad": (grid, grid), "gradcam": (last, last)}


def test_default_layers_of_modules_follow_wrappers(resnet):
    wrapped = nn.Sequential(nn.Identity(), resnet)
    t = default_layers(wrapped)
    assert t["gradcam"] == "1.layer4"
    assert t["contrastive_excitation_backprop"] == ("1.layer3", "1.avgpool")
    xx = torch.randn(1, 3, H, H)
    assert saliency("gradcam", wrapped, xx, 1).shape == (1, H, H)
    from cameras.models import load_model

    lite = load_model("efficientnet_lite0", weights=False)
    assert default_layers(lite.model)["gradcam"] == lite.layer
    tv = default_layers(torchvision.models.vgg11())
    assert tv == default_layers("vgg11")


def test_registry_metadata_is_complete():
    """Every method states what the tables, figures and layer defaults derive from it."""
    from cameras.methods import LAYER_ROLES, info, label

    for name in names():
        spec = info(name)
        assert spec.label and spec.label != name or name in ("cameras",), name
        assert spec.short and len(spec.short) <= 16, (name, spec.short)
        assert spec.group in ("paper", "extra"), name
        assert spec.layer_role in LAYER_ROLES, name
        assert spec.reference and spec.summary, name
        assert spec.order != float("inf"), f"{name}: give it an order in the canonical list"
        assert (spec.layer == "required") == (spec.layer_role not in (None,)), name
        assert label(name) == spec.label and label(name, short=True) == spec.short
    assert names()[0] == "cameras"
    assert PAPER_METHODS == tuple(n for n in names() if info(n).group == "paper")
    assert info("normgrad").layer_role == "normgrad"  # not the last block (class-agnostic there)
    assert method_settings("normgrad") == {"phase1": "conv1x1", "phase2": "norm"}
    used = {info(n).layer_role for n in names()}
    assert used <= set(LAYER_ROLES) and "normgrad" in used


def test_default_layer_table_follows_layer_roles():
    from cameras.methods import LAYER_ROLES, default_layers, info

    table = default_layers("resnet50")
    assert list(table) == names()
    roles = {"cam": "layer4", "ebp": "layer3", ("ebp", "contrast"): ("layer3", "avgpool"),
             "normgrad": "layer3", None: None}
    assert set(roles) == set(LAYER_ROLES)
    for name, layer in table.items():
        assert layer == roles[info(name).layer_role], name


def test_rise_softmax_scores_are_exact_and_stable():
    from cameras.methods.perturbation import _SoftmaxScores

    class Fixed(torch.nn.Module):
        def __init__(self, z):
            super().__init__()
            self.z = z

        def forward(self, x):
            return self.z.expand(x.shape[0], -1)

    z = torch.tensor([[30.0, 0.0, -5.0, 29.0], [0.1, 0.2, 0.3, 0.4]], dtype=torch.float64)
    for row in z:
        wrapped = _SoftmaxScores(Fixed(row[None]))
        got = torch.sigmoid(wrapped(torch.zeros(1, 3, 4, 4)).double())
        assert torch.allclose(got, row[None].softmax(1), atol=1e-6, rtol=1e-5)
        assert torch.isfinite(wrapped(torch.zeros(1, 3, 4, 4))).all()
    with pytest.raises(ValueError, match="scores must be"):
        method_settings("rise", scores="probability")
    assert method_settings("rise")["scores"] == "softmax"


def test_center_points_at_the_float_centre():
    from cameras.methods.perturbation import center_map, center_point

    assert center_point(375, 500) == (250.0, 187.5)
    m = center_map(375, 500)[0]
    rows = (m == m.max()).nonzero()[:, 0].unique().tolist()
    assert rows == [187, 188]  # the two rows around v = 187.5 tie: no half-pixel bias
    even = center_map(64, 64)[0]
    assert (even == even.max()).nonzero().tolist() == [[32, 32]]


def test_cameras_keep_setting_reaches_algorithm_1():
    with pytest.raises(ValueError, match="keep must be one of"):
        method_settings("cameras", keep="top1")
    assert method_settings("cameras")["keep"] == "auto"

"""Model registry, layers, offline weights, the download error, class names and data helpers."""

from __future__ import annotations

import socket
import time
import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torch

from cameras import data
from cameras.models import (
    IMAGENET_MEAN,
    MODELS,
    available_models,
    get_spec,
    load_model,
    resolve_device,
)

CAT_CLASSES = {281, 282, 285}  # tabby, tiger cat, Egyptian cat

EXPECTED = {
    "resnet50": ("layer4", 224, 2048),
    "vgg16": ("features.29", 224, 512),
    "densenet121": ("features", 224, 1024),
    "inception_v3": ("Mixed_7c", 299, 2048),
    "efficientnet_lite0": ("_head_act", 224, 1280),
    "efficientnet_lite1": ("_head_act", 240, 1280),
    "efficientnet_lite2": ("_head_act", 260, 1280),
}


def run_with_hook(model: torch.nn.Module, layer: str, x: torch.Tensor):
    """Forward ``x``; return (logits, list of the layer's outputs in that pass)."""
    modules = dict(model.named_modules())
    assert layer in modules, f"{layer} not in model"
    outs = []
    h = modules[layer].register_forward_hook(lambda m, i, o: outs.append(o.detach().clone()))
    try:
        with torch.no_grad():
            logits = model(x)
    finally:
        h.remove()
    return logits, outs


# ----------------------------------------------------------------------------------------
# registry
# ----------------------------------------------------------------------------------------
def test_registry_contents():
    assert available_models() == list(EXPECTED)
    for name, (layer, size, _) in EXPECTED.items():
        spec = MODELS[name]
        assert spec.layer == layer and spec.input_size == size
        assert spec.resize_size > spec.input_size
    assert MODELS["resnet50"].mean == IMAGENET_MEAN
    assert all(MODELS[f"efficientnet_lite{i}"].offline for i in range(3))
    assert get_spec("EfficientNet-Lite0").name == "efficientnet_lite0"


def test_unknown_model_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown model 'resnet5'.*available: resnet50.*Did you mean resnet50"):
        load_model("resnet5", weights=False)
    with pytest.raises(TypeError):
        load_model(50)  # type: ignore[arg-type]


NATIVE_GRID = {"resnet50": 7, "vgg16": 14, "densenet121": 7, "inception_v3": 8}


@pytest.mark.parametrize("name", ["resnet50", "vgg16", "densenet121", "inception_v3"])
def test_torchvision_layers_random_weights(name):
    torch.manual_seed(0)
    lm = load_model(name, weights=False)
    layer, size, channels = EXPECTED[name]
    assert lm.layer == layer and lm.weights.startswith("random")
    assert not lm.model.training
    assert len(lm.classes) == 1000
    grids = []
    for shape in [(size, size), (96, 128)]:  # native; non-native, non-square
        logits, outs = run_with_hook(lm.model, lm.layer, torch.randn(1, 3, *shape))
        assert logits.shape == (1, 1000)
        assert len(outs) == 1, "the layer must run exactly once per forward pass"
        assert outs[0].dim() == 4 and outs[0].shape[:2] == (1, channels)
        grids.append(tuple(outs[0].shape[2:]))
    assert grids[0] == (NATIVE_GRID[name],) * 2  # as documented in cameras.models
    assert grids[1][0] < grids[1][1]  # the grid follows the input's shape
    # and CAMERAS runs on the registry's layer (small sizes: this checks wiring, not quality)
    from cameras.core import Cameras

    sal = Cameras(lm.model, layer=lm.layer, sizes=(80, 100))(torch.randn(1, 3, 80, 96), targets=3)
    assert sal.shape == (1, 80, 96) and torch.isfinite(sal).all()
    assert float(sal.min()) >= 0.0 and float(sal.max()) <= 1.0


def test_torchvision_unknown_weights_name():
    with pytest.raises(ValueError, match="unknown torchvision weights 'NOPE'"):
        load_model("resnet50", weights="NOPE")


def test_download_error_names_file_and_folder(monkeypatch, tmp_path):
    def offline(*args, **kwargs):
        raise urllib.error.URLError("[Errno -2] Name or service not known")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    t0 = time.perf_counter()
    with pytest.raises(RuntimeError) as info:
        load_model("resnet50")
    assert time.perf_counter() - t0 < 10
    msg = str(info.value)
    assert "resnet50-0676ba61.pth" in msg
    assert str(tmp_path / "checkpoints") in msg
    assert "weights=False" in msg and "Name or service not known" in msg
    assert info.value.__cause__ is None and info.value.__suppress_context__  # no urllib traceback


def _offline() -> bool:
    try:
        socket.getaddrinfo("download.pytorch.org", 443)
    except OSError:
        return True
    return False


@pytest.mark.skipif(not _offline(), reason="only without internet (would download 100 MB)")
def test_real_download_fails_fast_offline(monkeypatch, tmp_path):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    monkeypatch.setenv("CAMERAS_DOWNLOAD_TIMEOUT", "3")
    t0 = time.perf_counter()
    with pytest.raises(RuntimeError, match="densenet121-a639ec97.pth"):
        load_model("densenet121")
    assert time.perf_counter() - t0 < 15
    assert not list(Path(tmp_path).rglob("*.pth"))  # no partial file left behind


def test_resolve_device():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ValueError, match="unknown device"):
        resolve_device("tpu9")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            resolve_device("cuda")


# ----------------------------------------------------------------------------------------
# EfficientNet-Lite (offline ImageNet weights)
# ----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def lite0():
    return load_model("efficientnet_lite0")


@pytest.fixture(scope="module")
def chelsea():
    return data.skimage_photos("chelsea")["chelsea"]


def test_lite0_classifies_chelsea_as_a_cat(lite0, chelsea):
    x = lite0.preprocess(chelsea)[None]
    assert x.shape == (1, 3, 224, 224)
    top = lite0.topk(x, k=5)[0]
    assert top[0][0] in CAT_CLASSES, top
    assert sum(p for c, _, p in top if c in CAT_CLASSES) > 0.5
    assert top[0][1] == lite0.classes[top[0][0]]
    # the layer: once per pass, (1, 1280, 7, 7) right before pooling
    logits, outs = run_with_hook(lite0.model, lite0.layer, x)
    assert len(outs) == 1 and outs[0].shape == (1, 1280, 7, 7)
    pooled = lite0.model._fc(outs[0].mean(dim=(2, 3)))
    torch.testing.assert_close(pooled, logits, rtol=1e-4, atol=1e-4)


def test_lite0_any_input_size(lite0, chelsea):
    from efficientnet_lite_pytorch.utils import Conv2dStaticSamePadding

    assert not any(isinstance(m, Conv2dStaticSamePadding) for m in lite0.model.modules())
    x424 = lite0.preprocess(chelsea, size=424)[None]
    assert x424.shape == (1, 3, 424, 424)
    logits, outs = run_with_hook(lite0.model, lite0.layer, x424)
    assert int(logits.argmax()) in CAT_CLASSES
    assert outs[0].shape == (1, 1280, 14, 14)
    _, outs = run_with_hook(lite0.model, lite0.layer, torch.randn(1, 3, 225, 331))
    assert outs[0].shape == (1, 1280, 8, 11)


@pytest.mark.parametrize("name", ["efficientnet_lite1", "efficientnet_lite2"])
def test_lite12_load_offline(name, chelsea):
    lm = load_model(name)
    x = lm.preprocess(chelsea)[None]
    assert x.shape[-1] == EXPECTED[name][1]
    logits, outs = run_with_hook(lm.model, lm.layer, x)
    assert len(outs) == 1 and outs[0].shape[1] == 1280
    assert int(logits.argmax()) in CAT_CLASSES


def test_normalize_roundtrip_and_to_image(lite0):
    x01 = torch.rand(2, 3, 8, 8)
    torch.testing.assert_close(lite0.denormalize(lite0.normalize(x01)), x01)
    img = lite0.to_image(lite0.normalize(x01)[0])
    assert img.shape == (8, 8, 3) and img.dtype == np.uint8
    assert np.abs(img.astype(int) - np.rint(x01[0].permute(1, 2, 0).numpy() * 255)).max() <= 1


# ----------------------------------------------------------------------------------------
# class names and data helpers
# ----------------------------------------------------------------------------------------
def test_class_names_and_find_class():
    names, wnids = data.imagenet_classes(), data.imagenet_wnids()
    assert len(names) == len(set(names)) == 1000 and wnids == sorted(wnids)
    assert names[0] == "tench" and names[281] == "tabby" and wnids[0] == "n01440764"
    assert data.find_class("tabby") == 281
    assert data.find_class("Egyptian_Cat") == 285
    assert data.find_class("n01440764") == 0
    assert data.find_class(7) == 7 and data.find_class("999") == 999
    assert data.find_class("golden retr") == 207
    with pytest.raises(ValueError, match="ambiguous"):
        data.find_class("cat")
    with pytest.raises(ValueError, match="no ImageNet class"):
        data.find_class("xyzzy")
    with pytest.raises(ValueError, match="0..999"):
        data.find_class(1000)


def test_imagenet_sample_from_a_folder(tmp_path, monkeypatch):
    from PIL import Image

    for fname in ["n01443537_goldfish.JPEG", "n01440764_tench.JPEG", "notes.txt"]:
        p = tmp_path / fname
        if fname.endswith(".JPEG"):
            Image.new("RGB", (40, 30), (10, 200, 30)).save(p, format="JPEG")
        else:
            p.write_text("not an image")
    monkeypatch.setenv("CAMERAS_IMAGENET_SAMPLE", str(tmp_path))
    assert data.imagenet_sample_dir() == tmp_path.resolve()
    ds = data.ImageNetSample()
    assert len(ds) == 2 and ds.labels == [0, 1]
    info = ds.info(1)
    assert (info.wnid, info.name, info.class_name) == ("n01443537", "goldfish", "goldfish")
    img, label = ds[0]
    assert img.mode == "RGB" and img.size == (40, 30) and label == 0
    (tmp_path / "badname.JPEG").write_bytes(b"")
    with pytest.raises(ValueError, match="badname.JPEG"):
        data.ImageNetSample()
    monkeypatch.setenv("CAMERAS_IMAGENET_SAMPLE", str(tmp_path / "missing"))
    with pytest.raises(FileNotFoundError, match="CAMERAS_IMAGENET_SAMPLE"):
        data.imagenet_sample_dir()


def test_shared_imagenet_sample_labels():
    try:
        root = data.imagenet_sample_dir()
    except FileNotFoundError:
        pytest.skip("the shared ImageNet sample is not available")
    ds = data.ImageNetSample(root)
    assert len(ds) == 1000 and ds.labels == list(range(1000))


def test_skimage_photos():
    photos = data.skimage_photos()
    assert list(photos) == list(data.SKIMAGE_PHOTOS)
    for img in photos.values():
        assert img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 3
    with pytest.raises(ValueError, match="unknown scikit-image photo"):
        data.skimage_photos(["camera"])


def test_channels_last_on_cpu_changes_speed_not_results(chelsea):
    """CPU models are stored channels_last by default; maps and logits match the NCHW model."""
    from cameras import Cameras

    cl = load_model("efficientnet_lite0")  # cpu: channels_last by default
    plain = load_model("efficientnet_lite0", channels_last=False)
    w_cl = cl.model._conv_stem.weight
    assert w_cl.is_contiguous(memory_format=torch.channels_last) and not w_cl.is_contiguous()
    assert plain.model._conv_stem.weight.is_contiguous()
    x = cl.preprocess(chelsea)[None]
    with torch.no_grad():
        torch.testing.assert_close(cl.model(x), plain.model(x), rtol=1e-4, atol=1e-4)
    a = Cameras(cl.model, layer=cl.layer, sizes=[224, 324])(x)
    b = Cameras(plain.model, layer=plain.layer, sizes=[224, 324])(x)
    assert (a - b).abs().max() < 1e-4

"""The API cases a new user meets: every one has a clear message or a defined result."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision.models as tvm
from torch import nn

from cameras import Cameras, cameras
from cameras.core import as_targets, class_index, match_class
from cameras.data import imagenet_classes
from cameras.hooks import locate_layer
from cameras.methods import hook_count, info, names, saliency
from cameras.models import load_model

REPO = Path(__file__).resolve().parents[1]


def images(b=1, c=3, h=64, w=64, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, c, h, w, generator=g).to(dtype)


@pytest.fixture(scope="module")
def resnet18():
    torch.manual_seed(0)
    return tvm.resnet18().eval()


# -- layer=None: the layer is located ---------------------------------------------------
ARCHITECTURES = {  # torchvision builder (random weights), expected layer
    "resnet50": (lambda: tvm.resnet50(), "layer4"),
    "densenet121": (lambda: tvm.densenet121(), "features"),
    "vgg16": (lambda: tvm.vgg16(), "features.29"),
    "inception_v3": (lambda: tvm.inception_v3(weights=None, aux_logits=False, init_weights=False),
                     "Mixed_7c"),
    "mobilenet_v3_large": (lambda: tvm.mobilenet_v3_large(), "features"),
    "convnext_tiny": (lambda: tvm.convnext_tiny(), "features"),
    "efficientnet_b0": (lambda: tvm.efficientnet_b0(), "features"),
}


@pytest.mark.parametrize("arch", list(ARCHITECTURES))
def test_default_layer_on_torchvision_architectures(arch, caplog):
    build, expected = ARCHITECTURES[arch]
    torch.manual_seed(0)
    model = build().eval()
    with caplog.at_level(logging.INFO, logger="cameras"):
        cam = Cameras(model, sizes=[96, 128])
    assert cam.layer_name == expected and cam.layer == expected
    assert f"explaining layer {expected!r}" in caplog.text
    maps = cam(images(h=96, w=112))
    assert maps.shape == (1, 96, 112) and torch.isfinite(maps).all()
    assert hook_count(model) == 0


@pytest.mark.parametrize("name", ["efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"])
def test_default_layer_on_offline_lite_models(name):
    lm = load_model(name)
    assert Cameras(lm.model, sizes=[lm.input_size]).layer_name == lm.layer == "_head_act"


def test_loaded_model_gives_layer_and_class_names():
    lm = load_model("efficientnet_lite0")
    cam = Cameras(lm, sizes=[224])
    assert cam.layer_name == lm.layer and cam.classes == lm.classes
    x = images(h=224, w=224)
    assert torch.allclose(cam(x, "tabby"), Cameras(lm.model, lm.layer, [224])(x, 281))


def test_locate_layer_skips_pools_shared_modules_and_dead_ends():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 8, 3, padding=1)
            self.act = nn.ReLU()  # runs twice: never chosen
            self.block = nn.Conv2d(8, 8, 3, padding=1)
            self.side = nn.Conv2d(8, 4, 1)  # runs last, but the logits do not use it
            self.pool = nn.AdaptiveAvgPool2d(2)  # a pool: never chosen
            self.fc = nn.Linear(32, 5)

        def forward(self, x):
            a = self.act(self.block(self.act(self.conv(x))))
            self.side(a)
            return self.fc(self.pool(a).flatten(1))

    net = Net().eval()
    assert locate_layer(net, images(h=32, w=32))[0] == "block"
    assert Cameras(net, sizes=[32]).layer_name == "block"


def test_no_layer_found_is_a_clear_error():
    mlp = nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, 4)).eval()
    with pytest.raises(ValueError, match="could not find a layer to explain.*pass layer="):
        Cameras(mlp, sizes=[32])


def test_functional_form_defaults_to_located_layer(resnet18):
    x = images()
    assert torch.allclose(cameras(resnet18, x, 3, sizes=[64, 96]),
                          Cameras(resnet18, "layer4", [64, 96])(x, 3))


# -- targets ------------------------------------------------------------------------------
def test_numpy_integer_targets(resnet18):
    cam = Cameras(resnet18, "layer4", [64, 96])
    x = images(b=2)
    ref = cam(x, 281)
    for t in (np.int64(281), np.int32(281), np.array(281), np.array([281, 281]), torch.tensor(281),
              [np.int64(281), 281]):
        assert torch.allclose(cam(x, t), ref), type(t)
    assert as_targets(np.uint8(7), 2, 10).tolist() == [7, 7]


def test_targets_by_class_name(resnet18):
    cam = Cameras(resnet18, "layer4", [64])
    x = images(b=2)
    assert torch.allclose(cam(x, "tabby"), cam(x, 281))
    assert torch.allclose(cam(x, ["cardigan", "Cardigan"]), cam(x, [474, 264]))
    assert torch.allclose(cam(x, ["tabby", 3]), cam(x, [281, 3]))
    with pytest.raises(ValueError, match=r"'CARDIGAN' is ambiguous.*264 'Cardigan', 474 'cardigan'"):
        cam(x, "CARDIGAN")
    with pytest.raises(ValueError, match="no class matches 'tabbby'. Closest: 'tabby'"):
        cam(x, "tabbby")
    assert torch.allclose(saliency("hirescam", resnet18, x, "tabby", layer="layer4"),
                          saliency("hirescam", resnet18, x, 281, layer="layer4"))


def test_class_name_matching_rules():
    classes = imagenet_classes()
    assert match_class("cardigan", classes) == 474 and match_class("Cardigan", classes) == 264
    assert match_class("great_white-shark", classes) == 2  # case, _ and - are ignored after exact
    assert class_index("281", classes) == 281 and class_index("٣", classes) == 3
    for bad, msg in [("²", "no class matches"), ("1000", "out of range"), ("", "empty")]:
        with pytest.raises(ValueError, match=msg):
            class_index(bad, classes)


def test_names_need_the_models_classes():
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                        nn.Linear(4, 3)).eval()
    x = images(h=32, w=32)
    with pytest.raises(ValueError, match=r"model has 3 classes.*list of 1000.*pass classes="):
        Cameras(net, "1", [32])(x, "tabby")
    cam = Cameras(net, "1", [32], classes=["cat", "dog", "Dog"])
    assert torch.allclose(cam(x, "Dog"), cam(x, 2)) and torch.allclose(cam(x, "cat"), cam(x, 0))
    with pytest.raises(ValueError, match="ambiguous"):
        cam(x, "DOG")
    with pytest.raises(ValueError, match="2 class names for a model with 3 classes"):
        as_targets("cat", 1, 3, classes=["cat", "dog"])


# -- inputs -------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
def test_other_float_dtypes_are_cast_to_the_model(resnet18, dtype):
    cam = Cameras(resnet18, "layer4", [64, 96])
    x = images(b=2)
    out = cam(x.to(dtype), [1, 2])
    assert out.dtype == dtype
    assert (out.float() - cam(x.to(dtype).float(), [1, 2])).abs().max() < 1e-2
    sal = saliency("hirescam", resnet18, x.to(dtype), 1, layer="layer4")
    assert sal.dtype == dtype


@pytest.mark.parametrize("channels", [1, 4])
def test_wrong_channel_count(resnet18, channels):
    msg = (f"images have {channels} channel{'s' if channels > 1 else ''} but the model's first "
           "convolution ('conv1') expects 3")
    with pytest.raises(ValueError, match=msg.replace("(", r"\(").replace(")", r"\)")):
        Cameras(resnet18, "layer4", [64])(images(c=channels))
    assert hook_count(resnet18) == 0


def test_inside_inference_mode(resnet18):
    cam = Cameras(resnet18, "layer4", [64, 96])
    x = images()
    ref = cam(x, 5)
    with torch.inference_mode():
        xi = x.clone()
        assert torch.allclose(cam(xi, 5), ref)
        assert torch.allclose(cam(xi), cam(x))
        assert Cameras(resnet18, sizes=[64]).layer_name == "layer4"
        assert saliency("hirescam", resnet18, xi, 5, layer="layer4").shape == (1, 64, 64)
    assert torch.is_grad_enabled() and not torch.is_inference_mode_enabled()


def test_train_mode_runs_in_eval_and_is_restored():
    torch.manual_seed(0)
    model = tvm.resnet18().eval()
    x = images(b=2)
    ref = Cameras(model, "layer4", [64, 96])(x, [1, 2])
    model.train()
    model.layer1.eval()  # a mixed state must come back as it was
    stats = {k: v.clone() for k, v in model.state_dict().items() if "running" in k or "num_batches" in k}
    out = Cameras(model, sizes=[64, 96])(x, [1, 2])  # also the layer search runs in eval
    assert torch.equal(out, ref)
    assert model.training and model.layer2.training and not model.layer1.training
    assert not model.layer1[0].bn1.training
    for k, v in model.state_dict().items():
        if k in stats:
            assert torch.equal(v, stats[k]), k  # num_batches_tracked and running stats untouched


def test_memory_guard_for_elongated_inputs(resnet18):
    calls = []
    handle = resnet18.conv1.register_forward_hook(lambda *a: calls.append(1))
    try:
        with pytest.raises(ValueError, match=r"10x10000 input .* 924x924000 .* max_pixels"):
            Cameras(resnet18, "layer4")(torch.zeros(1, 3, 10, 10000))
        assert calls == []  # refused before any forward pass
        with pytest.raises(ValueError, match="max_pixels"):
            Cameras(resnet18, "layer4", [64], max_pixels=64 * 64 - 1)(images())
        assert Cameras(resnet18, "layer4", [64], max_pixels=64 * 64)(images()).shape == (1, 64, 64)
    finally:
        handle.remove()
    with pytest.raises(ValueError, match="max_pixels must be a positive int"):
        Cameras(resnet18, "layer4", max_pixels=0)


# -- one policy for duplicate sizes, everywhere ------------------------------------------
def test_duplicate_sizes_are_refused_by_api_registry_and_cli(resnet18, tmp_path, capsys):
    with pytest.raises(ValueError, match="must not repeat a size"):
        Cameras(resnet18, "layer4", [64, 96, 64])
    with pytest.raises(ValueError, match="must not repeat a size"):
        saliency("cameras", resnet18, images(), 1, layer="layer4", sizes=[64, 64])
    from cameras.cli import main

    assert main(["explain", "x.png", "--sizes", "224", "224", "--out", str(tmp_path)]) == 2
    assert "must not repeat a size" in capsys.readouterr().err


# -- layers that run twice are refused by every layer method ------------------------------
class TwiceReLU(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 4, 3)
        self.relu = nn.ReLU()
        self.fc = nn.Linear(4, 2)

    def forward(self, x):
        return self.fc(self.relu(self.relu(self.conv(x))).mean(dim=(2, 3)))


LAYER_METHODS = [n for n in names() if info(n).layer != "none"]


@pytest.mark.parametrize("method", LAYER_METHODS)
def test_layer_that_runs_twice_is_refused(method):
    if info(method).source.startswith("torchray"):
        pytest.importorskip("torchray")
    net = TwiceReLU().eval()
    extra = {"sizes": [32]} if method == "cameras" else {}
    layer = ("relu", "conv") if method == "contrastive_excitation_backprop" else "relu"
    with pytest.raises(RuntimeError, match="layer 'relu' ran more than once in one forward pass"):
        saliency(method, net, images(h=32, w=32), 0, layer=layer, **extra)
    assert hook_count(net) == 0
    with pytest.raises(RuntimeError, match="ran more than once"):
        Cameras(net, "relu", [32])(images(h=32, w=32))


def test_gradcam_still_works_on_a_layer_that_runs_once():
    pytest.importorskip("torchray")
    net = TwiceReLU().eval()
    assert saliency("gradcam", net, images(h=32, w=32), 0, layer="conv").shape == (1, 32, 32)


# -- without TorchRay -------------------------------------------------------------------------
def test_core_and_cli_without_torchray(tmp_path):
    """TorchRay is the optional [paper] extra: the core and the CLI run without it, and the
    TorchRay methods say which extra to install, in one line."""
    from PIL import Image

    from cameras.data import skimage_photos

    photo = tmp_path / "coffee.png"
    Image.fromarray(skimage_photos("coffee")["coffee"]).save(photo)
    code = f"""
import sys
sys.modules["torchray"] = None  # as if it were not installed
import torch, torchvision
from cameras import Cameras
from cameras.methods import saliency
m = torchvision.models.resnet18().eval()
x = torch.randn(1, 3, 64, 64)
print("cameras", tuple(Cameras(m, sizes=[64])(x).shape), tuple(saliency("hirescam", m, x).shape))
for name in ("gradcam", "rise"):
    try:
        saliency(name, m, x)
    except ImportError as err:
        print(err)
from cameras.cli import main
print("cli", main(["explain", {str(photo)!r}, "--sizes", "224", "--out", {str(tmp_path / 'o')!r},
                   "--no-progress"]))
print("loaded torchray:", any(k.startswith("torchray.") for k in sys.modules))
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "cameras (1, 64, 64) (1, 64, 64)" in out
    for name in ("gradcam", "rise"):
        assert (f"saliency method '{name}' runs TorchRay, which is not installed: "
                "pip install 'cameras[paper]'") in out
    assert "cli 0" in out and "loaded torchray: False" in out
    assert (tmp_path / "o" / "coffee_map.npy").is_file()


def test_tutorial_shows_the_code_it_runs():
    """The five lines the tutorial page shows are the ones its (collapsed) code cell runs."""
    import json
    import re

    nb = json.loads((REPO / "notebooks" / "tutorial_own_model.ipynb").read_text())
    shown = [m for c in nb["cells"] if c["cell_type"] == "markdown"
             for m in re.findall(r"```python\n(.*?)```", "".join(c["source"]), re.S)]
    runs = ["".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code"]
    assert len(shown) == 1 and len(shown[0].strip().splitlines()) == 5
    assert any(src.startswith(shown[0].strip()) for src in runs)
    assert "tempfile.mkdtemp" in "".join(runs)  # outputs go to a temporary folder

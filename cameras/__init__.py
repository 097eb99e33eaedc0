"""cameras: CAMERAS saliency (Jalwana et al., CVPR 2021), reproduced.

>>> from cameras import Cameras, load_model
>>> lm = load_model("efficientnet_lite0")                 # offline ImageNet weights
>>> maps = Cameras(lm)(images, targets="tabby")           # (B, H, W) in [0, 1]
>>> maps = Cameras(model)(images)                         # any CNN: the layer is located

``load_model`` is imported lazily (it needs torchvision), so ``import cameras`` stays light.
"""

from .core import DEFAULT_SIZES, Cameras, cameras, normalize_maps
from .hooks import LayerCapture

__version__ = "0.1.0"
__all__ = ["Cameras", "cameras", "DEFAULT_SIZES", "normalize_maps", "LayerCapture", "load_model",
           "__version__"]


def __getattr__(name: str):
    if name == "load_model":
        from .models import load_model

        return load_model
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

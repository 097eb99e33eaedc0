"""cameras: CAMERAS saliency (Jalwana et al., CVPR 2021), reproduced.

>>> from cameras import Cameras
>>> maps = Cameras(model, layer="layer4", sizes=[224, 324, 424])(images)  # (B, H, W) in [0, 1]
"""

from .core import DEFAULT_SIZES, Cameras, cameras, normalize_maps
from .hooks import LayerCapture

__version__ = "0.1.0"
__all__ = ["Cameras", "cameras", "DEFAULT_SIZES", "normalize_maps", "LayerCapture", "__version__"]

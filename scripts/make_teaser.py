"""The teaser of the README and the book's landing page: one photo, Grad-CAM, CAMERAS.

    .venv/bin/python scripts/make_teaser.py [--image CLASS] [--out docs/teaser.png]

EfficientNet-Lite0 (offline weights) explains its top-1 class on a photo of the ImageNet
sample, the whole photo (no crop) with its shorter side at the model's 224 px: Grad-CAM at
that size, and CAMERAS (Algorithm 1's keep rule) over the paper's sizes 224 ... 924, both
brought back to the photo's own resolution. Regenerate after a change of the method.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F


def teaser(query: str = "bulbul", model: str = "efficientnet_lite0"):
    from cameras import Cameras
    from cameras.core import DEFAULT_SIZES
    from cameras.data import find_class, image_items
    from cameras.engine import zoomed_sizes
    from cameras.images import load_image
    from cameras.methods import saliency
    from cameras.models import load_model
    from cameras.plots import Panel, map_grid

    lm = load_model(model)
    item = image_items("imagenet_sample", classes=[find_class(query)])[0]
    photo = np.asarray(load_image(item.source))
    H, W = photo.shape[:2]
    x01 = torch.from_numpy(photo.copy()).permute(2, 0, 1).float().div(255)[None]
    s = lm.input_size / min(H, W)
    x = lm.normalize(F.interpolate(x01, size=(round(H * s), round(W * s)), mode="bicubic",
                                   align_corners=False, antialias=True)[0].clamp(0, 1))[None]
    cam = Cameras(lm.model, lm.layer, sizes=zoomed_sizes(lm.input_size, [v / 224 for v in DEFAULT_SIZES]),
                  keep="prediction", progress=False)
    cap = cam.capture(x)
    top = int(cap.targets[0, 0])
    full = cam.fuse(type(cap)(**{**vars(cap), "out_shape": (H, W)}), target=0)[0].numpy()
    gc = saliency("gradcam", lm.model, x, [top], layer=lm.layer)
    gc = F.interpolate(gc[:, None], size=(H, W), mode="bilinear", align_corners=False)[0, 0].numpy()
    p = float(cap.logits[0, 0].softmax(0)[top])
    kept = int(cap.kept[:, 0].sum())
    from cameras.models import label

    title = f"{label(model)} explains its top-1 class '{lm.classes[top]}' (p = {p:.2f}) on a {W}x{H} px photo"
    row = [Panel(image=photo, title="photo"),
           Panel(map=gc, image=photo, title="Grad-CAM (224 px)"),
           Panel(map=full, image=photo, title=f"CAMERAS (224-924 px; {kept} of {len(cam.sizes)} kept)")]
    return map_grid([row], title=title, panel_px=200)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--image", default="bulbul", help="ImageNet class of the sample photo")
    p.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "docs" / "teaser.png")
    args = p.parse_args(argv)
    fig = teaser(args.image)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, format="png")
    print(f"wrote {args.out.name} ({args.out.stat().st_size // 1024} KiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

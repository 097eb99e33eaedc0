"""Accuracy of mixed precision on real weights: CAMERAS maps in bfloat16 vs float32.

For each offline model (EfficientNet-Lite0/1/2, real ImageNet weights) and ``--images``
images of the ImageNet sample (evenly spread over the classes): the maps of
``Cameras(dtype=torch.bfloat16)`` against float32 (same sizes, Algorithm 1's keep rule), their
max and mean absolute difference (maps in [0, 1]), and the share of (image, size) pairs whose
top-1 agrees between the two precisions (which decides the kept sizes). Appends to
``benchmarks/results/bench_precision.csv``.

    python benchmarks/bench_precision.py --images 16 --device cpu
    python benchmarks/bench_precision.py --images 64 --device cuda --dtype float16
"""

from __future__ import annotations

import argparse
import csv
import platform
import sys
from datetime import datetime, timezone
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from cameras import Cameras, __version__  # noqa: E402
from cameras.core import DEFAULT_SIZES  # noqa: E402
from cameras.data import image_items  # noqa: E402
from cameras.engine import shifted_sizes  # noqa: E402
from cameras.images import load_image  # noqa: E402
from cameras.models import load_model  # noqa: E402


def measure(model: str, n: int, device: str, dtype: torch.dtype, batch: int) -> dict:
    lm = load_model(model, device=device)
    items = image_items(n=n)
    sizes = shifted_sizes(DEFAULT_SIZES, lm.input_size)
    full = Cameras(lm.model, lm.layer, sizes=sizes, keep="prediction", progress=False)
    low = Cameras(lm.model, lm.layer, sizes=sizes, keep="prediction", progress=False, dtype=dtype)
    errs, means, agree, total = [], [], 0, 0
    for i in range(0, len(items), batch):
        x = torch.stack([lm.preprocess(load_image(it.source)) for it in items[i : i + batch]]).to(lm.device)
        a, b = full(x), low(x)
        d = (a.float() - b.float()).abs().flatten(1)
        errs += d.amax(1).tolist()
        means += d.mean(1).tolist()
        agree += int((full.predictions == low.predictions).sum())
        total += full.predictions.numel()
    return {"model": model, "images": len(errs), "max_abs": max(errs), "mean_abs": sum(means) / len(means),
            "p95_of_image_max": sorted(errs)[int(0.95 * (len(errs) - 1))], "top1_agreement": agree / total}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", default=["efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"])
    p.add_argument("--images", type=int, default=8)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float16"])
    p.add_argument("--csv", default=str(Path(__file__).parent / "results" / "bench_precision.csv"))
    args = p.parse_args(argv)
    dtype = getattr(torch, args.dtype)
    path = Path(args.csv)
    path.parent.mkdir(parents=True, exist_ok=True)
    new = not path.exists()
    with path.open("a", newline="") as f:
        w = csv.writer(f)
        if new:
            w.writerow(["timestamp", "device", "dtype", "torch", "cameras", "model", "images", "max_abs",
                        "mean_abs", "p95_of_image_max", "top1_agreement"])
        for m in args.models:
            r = measure(m, args.images, args.device, dtype, args.batch)
            print(f"{m}: {r['images']} images, max |diff| {r['max_abs']:.4f}, mean {r['mean_abs']:.5f}, "
                  f"95th pct of per-image max {r['p95_of_image_max']:.4f}, top-1 agreement "
                  f"{100 * r['top1_agreement']:.1f} %", flush=True)
            w.writerow([datetime.now(timezone.utc).isoformat(timespec="seconds"), args.device, args.dtype,
                        torch.__version__, __version__, m, r["images"], f"{r['max_abs']:.5f}",
                        f"{r['mean_abs']:.6f}", f"{r['p95_of_image_max']:.5f}", f"{r['top1_agreement']:.4f}"])
    print(f"appended to {path} ({platform.node()})")
    return 0


if __name__ == "__main__":
    sys.exit(main())

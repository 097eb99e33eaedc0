"""Benchmark: the batched perturbation baselines against TorchRay's one-image runs (maps/s).

For each method, in the same process, on the same images, model and device:

* ``one_image`` -- the reference path, TorchRay called once per image
  (:func:`cameras.methods.perturbation.extremal_torchray`: 1 image x ``len(areas)`` masks per
  step; :func:`~cameras.methods.perturbation.rise_torchray`: the masks drawn again and all
  ``batch_size`` masked copies of one image per forward pass);
* ``batched`` -- what ``saliency()`` runs now (:func:`~cameras.methods.perturbation.extremal_batched`
  on ``--batch`` images at once, ``--batch x len(areas)`` masks per step;
  :func:`~cameras.methods.perturbation.rise_batched`: each chunk of masks drawn once and
  evaluated on ``RISE_FORWARD_BATCH // rise_chunk`` images per forward pass).

Reported per method: seconds and maps/s of each path (the best of ``--repeats`` timed runs
after a short warm-up), the speed-up ``batched / one_image``, and the largest difference
between the two paths' raw maps (a check that both computed the same thing). One row per
method is appended to a CSV (default ``benchmarks/results/bench_perturbation_<device>.csv``)
with the model, input size, settings, batch size, device, threads and the machine's load
average at start (on a shared machine the absolute numbers are noisy; the ratio less so).

Usage::

    python benchmarks/bench_perturbation.py                      # CPU, ResNet-18, 64 px, quick
    python benchmarks/bench_perturbation.py --device cuda --model resnet50 --size 224 \\
        --batch 32 --ep-iters 100 --rise-masks 2000

Random weights are used (the cost does not depend on the weights); ``--ep-iters`` and
``--rise-masks`` scale both paths alike (maps/s at 800 iterations / 8000 masks is the measured
value times ``ep_iters / 800`` / ``rise_masks / 8000``).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import sys
import time
import warnings
from datetime import datetime, timezone
from pathlib import Path

import torch
import torchvision

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from cameras import __version__  # noqa: E402
from cameras.methods import method_settings  # noqa: E402
from cameras.methods import perturbation as P  # noqa: E402

COLUMNS = ["timestamp", "method", "model", "input_size", "images", "batch_size", "settings",
           "device", "device_name", "threads", "load_avg_1min", "one_image_s", "batched_s",
           "one_image_maps_per_s", "batched_maps_per_s", "speedup", "max_abs_diff", "torch",
           "cameras", "host", "note"]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _best_time(fn, device: torch.device, repeats: int) -> tuple[float, torch.Tensor]:
    best, out = float("inf"), None
    for _ in range(repeats):
        _sync(device)
        t0 = time.perf_counter()
        out = fn()
        _sync(device)
        best = min(best, time.perf_counter() - t0)
    return best, out


def _paths(method: str, model, images, targets, s: dict, batch: int):
    """``(one_image, batched)`` callables computing the raw maps of all images."""
    if method == "extremal_perturbation":
        def batched():
            return torch.cat([P.extremal_batched(model, images[i:i + batch], targets[i:i + batch], s)
                              for i in range(0, len(images), batch)])
        return (lambda: P.extremal_torchray(model, images, targets, s)), batched

    def rise_batched():
        return torch.cat([P.rise_batched(model, images[i:i + batch], targets[i:i + batch], s)
                          for i in range(0, len(images), batch)])
    return (lambda: P.rise_torchray(model, images, targets, s)), rise_batched


def _settings(method: str, a) -> dict:
    if method == "extremal_perturbation":
        return method_settings(method, max_iter=a.ep_iters, areas=a.ep_areas)
    return method_settings(method, num_masks=a.rise_masks, batch_size=a.rise_chunk)


def _warm(method: str, a) -> dict:
    """Cheap settings for the warm-up call (allocator, kernels, thread pools)."""
    if method == "extremal_perturbation":
        return method_settings(method, max_iter=2, areas=a.ep_areas)
    return method_settings(method, num_masks=a.rise_chunk, batch_size=a.rise_chunk)


def bench(method: str, model, images, targets, a, device: torch.device) -> dict:
    s = _settings(method, a)
    for fn in _paths(method, model, images[:1], targets[:1], _warm(method, a), a.batch):
        fn()
    one, batched = _paths(method, model, images, targets, s, a.batch)
    t_one, m_one = _best_time(one, device, a.repeats)
    t_bat, m_bat = _best_time(batched, device, a.repeats)
    n = len(images)
    return {"method": method, "settings": json.dumps(s, sort_keys=True), "one_image_s": round(t_one, 4),
            "batched_s": round(t_bat, 4), "one_image_maps_per_s": round(n / t_one, 5),
            "batched_maps_per_s": round(n / t_bat, 5), "speedup": round(t_one / t_bat, 3),
            "max_abs_diff": f"{float((m_one - m_bat).abs().max()):.3g}"}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--model", default="resnet18", help="torchvision model name (random weights)")
    ap.add_argument("--size", type=int, default=64, help="input side in pixels")
    ap.add_argument("--batch", type=int, default=8, help="images per batched call")
    ap.add_argument("--images", type=int, default=None, help="images per path (default: --batch)")
    ap.add_argument("--methods", nargs="+", default=["extremal_perturbation", "rise"],
                    choices=["extremal_perturbation", "rise"])
    ap.add_argument("--ep-iters", type=int, default=20)
    ap.add_argument("--ep-areas", type=float, nargs="+", default=[0.025, 0.05, 0.1, 0.2])
    ap.add_argument("--rise-masks", type=int, default=256)
    ap.add_argument("--rise-chunk", type=int, default=32, help="RISE batch_size (masks per chunk)")
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--note", default="")
    ap.add_argument("--out", default=None)
    a = ap.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    device = torch.device(a.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device available")
    n = a.images or a.batch
    torch.manual_seed(0)
    model = getattr(torchvision.models, a.model)(weights=None).eval().to(device)
    g = torch.Generator().manual_seed(0)
    images = torch.randn(n, 3, a.size, a.size, generator=g).to(device)
    with torch.no_grad():
        classes = model(images[:1]).shape[1]
    targets = torch.randint(0, classes, (n,), generator=g).to(device)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    common = {
        "timestamp": datetime.now(timezone.utc).isoformat(timespec="seconds"), "model": a.model,
        "input_size": a.size, "images": n, "batch_size": a.batch, "device": a.device,
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
        "threads": torch.get_num_threads(), "load_avg_1min": round(load, 2), "torch": torch.__version__,
        "cameras": __version__, "host": platform.node(), "note": a.note}
    out = Path(a.out or Path(__file__).parent / "results" / f"bench_perturbation_{a.device}.csv")
    out.parent.mkdir(parents=True, exist_ok=True)
    new = not out.exists()
    with out.open("a", newline="") as f, warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"torch\.meshgrid")
        w = csv.DictWriter(f, fieldnames=COLUMNS)
        if new:
            w.writeheader()
        for method in a.methods:
            row = {**common, **bench(method, model, images, targets, a, device)}
            w.writerow(row)
            f.flush()
            print(f"{method:22s} one-image {row['one_image_maps_per_s']:.4g} maps/s  batched "
                  f"{row['batched_maps_per_s']:.4g} maps/s  speed-up {row['speedup']}x  "
                  f"max|diff| {row['max_abs_diff']}  ({a.model}, {a.size}px, batch {a.batch}, {a.device})")
    print(f"rows appended to {out}")


if __name__ == "__main__":
    main()

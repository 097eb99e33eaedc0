"""Projection: the wall time of the paper profile on 1 and on 8 GPUs (with the Ray path).

    python benchmarks/project_paper.py [--times times.json] [--gpus 1 8] [--ray-overhead 0.05]

**How it is projected.** The paper profile's work is counted in maps (Table 1: every
(image, class present) pair of VOC07 test and COCO14 val, for each method and for VGG16 and
ResNet-50; Table 2: the 50,000 ImageNet val images for CAMERAS, Grad-CAM and NormGrad on
ResNet-50, DenseNet-121 and Inception-v3, with the map-density evaluations; the attacks: one
plain and one focused PGD per val image on ResNet-50). Each count is multiplied by a measured
time per map on one GPU and summed; on N GPUs the units are independent Ray tasks (one GPU
each, the driver only writes rows), so the time is the single-GPU time divided by N, plus a
per-unit scheduling overhead (``--ray-overhead`` seconds per unit of ``--unit-maps`` maps) --
an ideal-scaling projection that ignores data loading and assumes enough units per GPU.

The default times per map are the ones measured on one NVIDIA H200 in an earlier session of
this project (issue 13's text: RISE 8,000 masks at batch 250, extremal perturbation 800
iterations x 3 areas one image at a time, CAMERAS 8 sizes at batch 64) and, for the cheap
backprop methods, an order of magnitude from the same machine; ``--times`` replaces any of
them with numbers from ``bench_cameras.py`` / ``bench_perturbation.py`` on your GPU.
"""

from __future__ import annotations

import argparse
import json
import sys

#: image-class pairs of the pointing game (TorchRay's VOC07 test and COCO14 val, all classes present)
PAIRS = {"voc07": 6_800, "coco14": 116_000}
VAL = 50_000
#: seconds per map on one GPU (see the module docstring), per (method, model)
TIMES = {
    ("rise", "resnet50"): 1.06, ("rise", "vgg16"): 1.78,
    ("extremal_perturbation", "resnet50"): 10.9, ("extremal_perturbation", "vgg16"): 4.0,
    ("cameras", "resnet50"): 0.0087, ("cameras", "vgg16"): 0.0186, ("cameras", "densenet121"): 0.0139,
    ("cameras", "inception_v3"): 0.015, ("backprop", "any"): 0.003, ("pgd", "resnet50"): 0.5,
    ("density_eval", "any"): 0.01,
}
TABLE1_METHODS = ["center", "gradient", "deconvnet", "guided_backprop", "excitation_backprop",
                  "contrastive_excitation_backprop", "rise", "gradcam", "extremal_perturbation",
                  "normgrad", "cameras"]


def per_map(method: str, model: str, times: dict) -> float:
    for key in ((method, model), (method, "any")):
        if key in times:
            return times[key]
    return 0.0 if method == "center" else times[("backprop", "any")]


def workload(times: dict) -> dict[str, float]:
    """Single-GPU seconds of each part of the paper profile."""
    t1 = sum(PAIRS[d] * per_map(m, a, times) for d in PAIRS for a in ("vgg16", "resnet50")
             for m in TABLE1_METHODS)
    t2 = sum(VAL * (per_map(m, a, times) + per_map("density_eval", a, times))
             for a in ("resnet50", "densenet121", "inception_v3") for m in ("cameras", "gradcam", "normgrad"))
    atk = VAL * (2 * per_map("pgd", "resnet50", times) + per_map("cameras", "resnet50", times))
    return {"table1": t1, "table2": t2, "attacks": atk}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--times", help='JSON {"method|model": seconds per map} overriding the defaults')
    p.add_argument("--gpus", type=int, nargs="+", default=[1, 8])
    p.add_argument("--ray-overhead", type=float, default=0.05, help="seconds per Ray unit")
    p.add_argument("--unit-maps", type=int, default=64, help="maps per unit")
    args = p.parse_args(argv)
    times = dict(TIMES)
    if args.times:
        times.update({tuple(k.split("|")): float(v) for k, v in json.load(open(args.times)).items()})
    parts = workload(times)
    total = sum(parts.values())
    maps = 2 * len(TABLE1_METHODS) * sum(PAIRS.values()) + 9 * VAL + VAL
    print("single-GPU time per part: " + ", ".join(f"{k} {v / 3600:.1f} h" for k, v in parts.items()))
    for n in args.gpus:
        over = 0.0 if n == 1 else args.ray_overhead * maps / args.unit_maps / n
        print(f"{n} GPU(s): {(total / n + over) / 3600:.1f} h  (ideal scaling + {over / 3600:.2f} h Ray overhead)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

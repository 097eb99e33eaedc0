"""Metrics on hand-made cases: pointing game (TorchRay protocol), grid pointing game,
map density, insertion/deletion; the pointing-game datasets and their missing-data errors."""

from __future__ import annotations

import json
import math
import time

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image
from torch import nn

from cameras import datasets as cds
from cameras.metrics import (
    PointingScore,
    auc,
    boxes_to_mask,
    grid_cell_bounds,
    grid_pointing_game,
    insertion_deletion,
    load_difficult_flags,
    make_grids,
    map_density,
    pointing_game_run,
    pointing_game_summary,
    pointing_hit,
    saliency_point,
)
from cameras.runs import read_results

VOC = cds.VOC_CLASSES


# ========================================================================================
# pointing game: the protocol on synthetic masks
# ========================================================================================
def test_saliency_point_is_first_maximum_as_u_v():
    m = torch.zeros(2, 5, 7)
    m[0, 3, 2] = 1
    m[1, 1, 4] = m[1, 3, 0] = 2  # tie: the first in row-major order wins
    assert saliency_point(m).tolist() == [[2, 3], [4, 1]]
    assert saliency_point(m[0]).tolist() == [[2, 3]]


def test_boxes_to_mask_inclusive():
    m = boxes_to_mask([(1, 2, 3, 4), (6, 0, 6, 0)], 6, 8)
    assert m.sum() == 3 * 3 + 1
    assert m[2:5, 1:4].all() and m[0, 6] and not m[1, 6]


def test_pointing_hit_tolerance_is_15_pixels_strict():
    mask = torch.zeros(60, 80, dtype=torch.bool)
    mask[10, 20] = True
    assert pointing_hit(mask, (20, 10))
    assert pointing_hit(mask, (34, 10))  # distance 14
    assert not pointing_hit(mask, (35, 10))  # distance 15: TorchRay uses d^2 < 15^2
    assert pointing_hit(mask, (30, 21))  # 10^2 + 11^2 = 221 < 225
    assert not pointing_hit(mask, (31, 21))  # 11^2 + 11^2 = 242
    assert pointing_hit(mask, (35, 10), tolerance=16)


def test_score_is_mean_of_per_class_rates():
    s = PointingScore(3)
    for c, o in [(0, 1), (0, 1), (1, 1), (1, -1), (1, -1), (1, -1), (2, 0)]:
        s.add(c, o)
    # per-class: 1.0, 0.25, (class 2 never evaluated); mean over pairs would be 3/6
    assert float(s.accuracy) == pytest.approx((1 + 0.25 + 0) / 3)  # TorchRay: all classes
    assert s.accuracy_evaluated == pytest.approx(0.625)
    assert s.evaluated == 6 and s.classes_evaluated == 2
    with pytest.raises(ValueError):
        s.add(0, 2)


def test_difficult_flags_from_torchray():
    voc = load_difficult_flags("voc07")
    assert len(voc) == 4952 and all(len(v) == 20 for v in voc.values())
    assert voc["000001"][VOC.index("dog")] and sum(voc["000001"]) == 1
    coco = load_difficult_flags("coco14")
    assert len(coco) == 40137 and all(len(v) == 80 for v in coco.values())
    with pytest.raises(ValueError):
        load_difficult_flags("imagenet")


# ========================================================================================
# pointing game: the whole run on a synthetic VOC 2007 test folder
# ========================================================================================
def _voc_xml(name, width, height, objects):
    objs = "".join(
        f"<object><name>{n}</name><difficult>{d}</difficult><bndbox><xmin>{b[0]}</xmin>"
        f"<ymin>{b[1]}</ymin><xmax>{b[2]}</xmax><ymax>{b[3]}</ymax></bndbox></object>"
        for n, d, b in objects
    )
    return (f"<annotation><filename>{name}.jpg</filename><size><width>{width}</width>"
            f"<height>{height}</height><depth>3</depth></size>{objs}</annotation>")


def make_voc(root, images):
    base = root / "VOCdevkit" / "VOC2007"
    for sub in ("JPEGImages", "Annotations", "ImageSets/Main"):
        (base / sub).mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for name, (w, h, objs) in images.items():
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(
            base / "JPEGImages" / f"{name}.jpg")
        (base / "Annotations" / f"{name}.xml").write_text(_voc_xml(name, w, h, objs))
    (base / "ImageSets" / "Main" / "test.txt").write_text("\n".join(images) + "\n")
    return root


# real VOC07 test names, so TorchRay's difficult flags apply: 000001 flags only "dog"
SYNTH = {
    # 200 x 100; centre point (u, v) = (100, 50)
    "000001": (200, 100, [("dog", 0, (81, 31, 120, 70)),       # covers the centre: hit
                          ("person", 0, (1, 1, 20, 20))]),      # far corner: miss
    "000002": (120, 90, [("cat", 1, (50, 40, 70, 50)),          # all boxes difficult: skipped
                         ("car", 0, (40, 30, 80, 60))]),        # covers (60, 45): hit
}


@pytest.fixture(scope="module")
def voc_root(tmp_path_factory):
    return make_voc(tmp_path_factory.mktemp("voc"), SYNTH)


@pytest.fixture(scope="module")
def voc20():
    torch.manual_seed(0)
    return torchvision.models.resnet18(num_classes=20).eval()


def test_voc_dataset_and_center_baseline_protocol(voc_root, voc20, tmp_path):
    ds = cds.voc2007_test(voc_root)
    assert len(ds) == 2 and ds.classes[11] == "dog"
    assert sorted(ds.as_class_ids(ds[0][1])) == [VOC.index("dog"), VOC.index("person")]
    path = tmp_path / "pg.csv"
    (summary,) = pointing_game_run(voc20, ds, "center", path=path, model_name="toy",
                                   progress=False)
    rows = read_results(path)
    hits = {(r.image, VOC[r.class_id]): (r.hit_all, r.hit_difficult) for r in rows.itertuples()}
    assert hits == {
        ("000001", "dog"): (1, 1),        # hit; flagged difficult -> also in Difficult
        ("000001", "person"): (-1, 0),    # miss; not flagged -> skipped in Difficult
        ("000002", "cat"): (0, 0),        # all its boxes are PASCAL-difficult -> skipped
        ("000002", "car"): (1, 0),        # hit; no flags for 000002
    }
    pts = {(r.image, VOC[r.class_id]): (r.point_u, r.point_v) for r in rows.itertuples()}
    assert pts[("000001", "dog")] == (100, 50) and pts[("000002", "car")] == (60, 45)
    assert summary["all"] == pytest.approx(2 / 20)  # TorchRay: mean over the 20 classes
    assert summary["all_evaluated"] == pytest.approx(2 / 3)
    assert summary["difficult"] == pytest.approx(1 / 20)
    assert summary["pairs_all"] == 3 and summary["pairs_difficult"] == 1


def test_pointing_game_run_resumes_and_records(voc_root, voc20, tmp_path):
    ds = cds.voc2007_test(voc_root)
    path = tmp_path / "pg.csv"
    pointing_game_run(voc20, ds, "gradcam", path=path, model_name="toy", limit=1,
                      input_size=64, progress=False)
    assert len(read_results(path)) == 2
    (s,) = pointing_game_run(voc20, ds, "gradcam", path=path, model_name="toy", input_size=64,
                             progress=False)
    before = path.read_text()
    pointing_game_run(voc20, ds, "gradcam", path=path, model_name="toy", input_size=64,
                      progress=False)
    assert path.read_text() == before  # nothing recomputed or duplicated
    df = read_results(path)
    assert len(df) == 4 and df[["image", "target"]].duplicated().sum() == 0
    assert set(df["layer"]) == {"layer4"} and df["settings"][0] == {}
    assert s["pairs"] == 4
    meta = json.loads(path.with_name("pg.meta.json").read_text())
    assert meta["sessions"][0]["meta"]["method"] == "gradcam"
    assert meta["sessions"][0]["meta"]["layer"] == "layer4"
    # RISE settings are recorded in the rows
    rpath = tmp_path / "rise.csv"
    pointing_game_run(voc20, ds, "rise", path=rpath, model_name="toy", input_size=32, limit=1,
                      num_masks=4, batch_size=4, progress=False)
    assert read_results(rpath)["settings"][0]["num_masks"] == 4


def test_pointing_game_summary_from_rows():
    rows = [
        {"model": "a", "method": "m", "class_id": 0, "hit_all": 1, "hit_difficult": 0},
        {"model": "a", "method": "m", "class_id": 1, "hit_all": -1, "hit_difficult": -1},
        {"model": "a", "method": "m", "class_id": 1, "hit_all": 1, "hit_difficult": 1},
    ]
    (s,) = pointing_game_summary(rows, num_classes=2)
    assert s["all"] == pytest.approx((1 + 0.5) / 2) and s["difficult"] == pytest.approx(0.25)


def test_coco_protocol_with_instance_masks(tmp_path):
    pytest.importorskip("pycocotools")
    flags = load_difficult_flags("coco14")
    name = "COCO_val2014_000000262148"
    flagged = flags[name].index(True)
    unflagged = flags[name].index(False)
    cat_ids = sorted(cds._trd._COCO_CLASS_TO_INDEX, key=cds._trd._COCO_CLASS_TO_INDEX.get)
    root = tmp_path / "coco"
    (root / "val2014").mkdir(parents=True)
    (root / "annotations").mkdir()
    Image.new("RGB", (100, 80)).save(root / "val2014" / f"{name}.jpg")

    def square(x0, y0, x1, y1):
        return [[x0, y0, x1, y0, x1, y1, x0, y1]]

    ann = {
        "images": [{"id": 262148, "file_name": f"{name}.jpg", "width": 100, "height": 80}],
        "annotations": [
            {"id": 1, "image_id": 262148, "category_id": cat_ids[flagged], "iscrowd": 0,
             "segmentation": square(40, 30, 60, 50), "area": 400, "bbox": [40, 30, 20, 20]},
            {"id": 2, "image_id": 262148, "category_id": cat_ids[unflagged], "iscrowd": 0,
             "segmentation": square(0, 0, 10, 10), "area": 100, "bbox": [0, 0, 10, 10]},
        ],
        "categories": [{"id": c, "name": str(c)} for c in cat_ids],
    }
    (root / "annotations" / "instances_val2014.json").write_text(json.dumps(ann))
    ds = cds.coco2014_val(tmp_path)
    assert cds.dataset_kind(ds) == "coco14"
    (s,) = pointing_game_run(nn.Identity(), ds, "center", path=tmp_path / "c.csv",
                             model_name="toy", progress=False)
    df = read_results(tmp_path / "c.csv")
    got = {int(r.class_id): (r.hit_all, r.hit_difficult) for r in df.itertuples()}
    assert got == {flagged: (1, 1), unflagged: (-1, 0)}
    assert s["all"] == pytest.approx(1 / 80) and s["difficult"] == pytest.approx(1 / 80)


# -- missing data and models: clear and quick errors ---------------------------------------
def test_missing_data_errors_are_clear(tmp_path, monkeypatch):
    monkeypatch.delenv(cds.ENV_ROOT, raising=False)
    with pytest.raises(cds.MissingDataError, match="CAMERAS_DATA_ROOT"):
        cds.voc2007_test()
    with pytest.raises(cds.MissingDataError) as err:
        cds.voc2007_test(tmp_path)
    msg = str(err.value)
    assert "VOCdevkit/VOC2007" in msg and "VOCtest_06-Nov-2007.tar" in msg and str(tmp_path) in msg
    monkeypatch.setenv(cds.ENV_ROOT, str(tmp_path))
    with pytest.raises(cds.MissingDataError, match="instances_val2014.json"):
        cds.coco2014_val()
    monkeypatch.setattr(cds, "_reachable", lambda url, timeout: "no network (test)")
    with pytest.raises(cds.MissingDataError, match="download failed"):
        cds.voc2007_test(download=True)


def test_missing_model_names_file_url_and_folders(tmp_path, monkeypatch):
    hub = torch.hub.get_dir()
    torch.hub.set_dir(str(tmp_path / "hub"))
    monkeypatch.setenv(cds.ENV_ROOT, str(tmp_path / "data"))
    monkeypatch.setattr(cds, "_reachable", lambda url, timeout: "no network (test)")
    try:
        t0 = time.time()
        with pytest.raises(cds.MissingDataError) as err:
            cds.load_pointing_model("vgg16", "voc07")
        assert time.time() - t0 < 5
        msg = str(err.value)
        assert "vgg16_voc-b050e8c3.pth.tar" in msg
        assert "https://dl.fbaipublicfiles.com/torchray/vgg16_voc-b050e8c3.pth.tar" in msg
        assert str(tmp_path / "data" / "models") in msg and str(tmp_path / "hub") in msg
        with pytest.raises(ValueError, match="resnet50"):
            cds.checkpoint_path("alexnet", "voc07")
    finally:
        torch.hub.set_dir(hub)


def test_unreachable_host_fails_fast():
    t0 = time.time()
    reason = cds._reachable("http://10.255.255.1/x", timeout=1)
    assert reason is not None and time.time() - t0 < 5


def test_logsumexp_reduction_backpropagates_torchrays_pointing_gradient():
    from torchray.attribution.common import get_pointing_gradient

    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Conv2d(4, 5, 3)).eval()
    x = torch.randn(1, 3, 9, 12, requires_grad=True)
    out = net(x)
    out.backward(get_pointing_gradient(out, 2))
    g_torchray = x.grad.clone()
    x.grad = None
    reduced = cds.reduce_spatial_logits(net)
    assert reduced(x).shape == (1, 5)
    reduced(x)[0, 2].backward()
    assert torch.allclose(x.grad, g_torchray, atol=1e-6)


# ========================================================================================
# grid pointing game
# ========================================================================================
class CodeNet(nn.Module):
    """Classifies an image by a code in its top-left pixel: logits = 8 * one_hot(code).

    Images whose code is -1 are unconfident (uniform logits).
    """

    def __init__(self, classes=6):
        super().__init__()
        self.classes = classes
        self.w = nn.Parameter(torch.ones(1))

    def forward(self, x):
        code = x[:, 0, 0, 0].round().long()
        out = torch.zeros(x.shape[0], self.classes)
        ok = code >= 0
        out[ok] = 8.0 * nn.functional.one_hot(code[ok], self.classes).float()
        return out * self.w


def test_make_grids_uses_confident_correct_images_of_distinct_classes():
    n = 12
    labels = torch.arange(n) % 6
    imgs = torch.rand(n, 3, 8, 8)
    imgs[:, 0, 0, 0] = labels.float()
    imgs[0, 0, 0, 0] = 3  # misclassified (label 0)
    imgs[1, 0, 0, 0] = -1  # unconfident
    g = make_grids(CodeNet(), imgs, labels, n_grids=5, rng=1)
    assert g.images.shape == (5, 3, 16, 16) and g.labels.shape == (5, 4)
    for k in range(5):
        assert len(set(g.labels[k].tolist())) == 4
        for j in range(4):
            i = int(g.sources[k, j])
            assert i not in (0, 1) and labels[i] == g.labels[k, j]
            rs, cs = grid_cell_bounds(16, 16, j)
            assert torch.equal(g.images[k, :, rs, cs], imgs[i])
    assert (g.confidence > 0.5).all()
    again = make_grids(CodeNet(), imgs, labels, n_grids=5, rng=1)
    assert torch.equal(again.sources, g.sources)
    small = make_grids(CodeNet(), imgs, labels, n_grids=2, rng=1, cell_size=4)
    assert small.images.shape == (2, 3, 8, 8)
    with pytest.raises(ValueError, match="4 different classes"):
        make_grids(CodeNet(), imgs[:3], labels[:3], n_grids=1)


def test_grid_pointing_game_hand_made():
    m = torch.zeros(3, 8, 8)
    m[0, 1, 5] = 3.0  # cell 1 (top right)
    m[0, 2, 2] = 1.0  # cell 0
    m[1] = m[0]
    # map 2 is all zero
    r = grid_pointing_game(m, [1, 0, 3])
    assert r["share"].tolist() == pytest.approx([0.75, 0.25, 0.0])
    assert r["hit"].tolist() == [True, False, False]
    assert r["hit_rate"] == pytest.approx(1 / 3) and r["n"] == 3
    neg = torch.zeros(1, 7, 9)
    neg[0, 6, 8] = 2.0
    neg[0, 0, 0] = -5.0  # negative saliency is ignored
    r = grid_pointing_game(neg, 3)
    assert r["share"].tolist() == [1.0] and r["hit"].tolist() == [True]
    assert grid_cell_bounds(7, 9, 3) == (slice(3, 7), slice(4, 9))
    with pytest.raises(ValueError):
        grid_pointing_game(m, [0, 1])


def test_grid_pointing_rows_batch_equals_one_grid_at_a_time():
    from cameras.metrics import GRID_COLUMNS, Grids, grid_pointing_rows

    torch.manual_seed(0)
    net = torchvision.models.resnet18(num_classes=6).eval()
    g = Grids(images=torch.randn(2, 3, 64, 64), labels=torch.tensor([[0, 1, 2, 3], [5, 4, 3, 2]]),
              sources=torch.arange(8).view(2, 4), confidence=torch.ones(2, 4))
    rows, maps = grid_pointing_rows(net, g, [0, 1], "gradcam", model_name="r18")
    assert maps.shape == (8, 64, 64) and all(set(r) == set(GRID_COLUMNS) for r in rows)
    assert [r["image"] for r in rows] == ["grid00000"] * 4 + ["grid00001"] * 4
    assert [r["cell"] for r in rows] == [0, 1, 2, 3] * 2
    assert [r["target"] for r in rows] == [0, 1, 2, 3, 5, 4, 3, 2]
    one = [r for n in (0, 1) for r in grid_pointing_rows(net, g, [n], "gradcam", model_name="r18")[0]]
    assert [r["share"] for r in rows] == pytest.approx([r["share"] for r in one], abs=1e-6)
    assert [r["hit"] for r in rows] == [r["hit"] for r in one]
    center, _ = grid_pointing_rows(net, g, [0, 1], "center", model_name="r18")
    # the centre pixel (32, 32) of a 64 px 2x2 grid lies in the last cell
    assert [r["hit"] for r in center] == [0, 0, 0, 1] * 2


# ========================================================================================
# map density
# ========================================================================================
class Recorder(nn.Module):
    """Fixed logits; records its inputs."""

    def __init__(self, logits):
        super().__init__()
        self.logits = torch.as_tensor(logits, dtype=torch.float32)
        self.seen = []

    def forward(self, x):
        self.seen.append(x.detach().clone())
        return self.logits.expand(x.shape[0], -1)


MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def test_map_density_masks_in_pixel_space_and_divides_by_area():
    torch.manual_seed(0)
    x01 = torch.rand(2, 3, 4, 4)
    m = torch.tensor(MEAN).view(1, 3, 1, 1)
    s = torch.tensor(STD).view(1, 3, 1, 1)
    images = (x01 - m) / s
    maps = torch.zeros(2, 4, 4)
    maps[0, :2] = 1.0  # keeps half the image
    maps[1, 0, 0] = 0.5
    net = Recorder([1.0, 0.0])
    p = torch.softmax(torch.tensor([1.0, 0.0]), 0)[0].item()
    rp, rm = map_density(net, images, maps, [0, 0], mean=MEAN, std=STD)
    assert rp.tolist() == pytest.approx([p / 0.5, p / (0.5 / 16)])
    assert rm.tolist() == pytest.approx([p / 0.5, p / (1 - 0.5 / 16)])
    keep, drop = net.seen
    psi = maps[:, None]
    assert torch.allclose(keep * s + m, x01 * psi, atol=1e-6)  # I * Psi, black elsewhere
    assert torch.allclose(drop * s + m, x01 * (1 - psi), atol=1e-6)
    net.seen.clear()
    map_density(net, images, maps, [0, 0], mean=MEAN, std=STD, baseline="mean")
    keep, _ = net.seen
    assert torch.allclose(keep, images * psi, atol=1e-6)  # mean colour = 0 in normalised space


def test_map_density_degenerate_maps_are_never_nan():
    images = torch.randn(2, 3, 4, 4)
    maps = torch.stack([torch.zeros(4, 4), torch.ones(4, 4)])
    rp, rm, d = map_density(Recorder([0.0, 0.0]), images, maps, 0, mean=MEAN, std=STD,
                            return_details=True)
    assert rp[0] == 0 and math.isinf(rm[1]) and rm[1] > 0
    assert rp[1] == pytest.approx(0.5) and rm[0] == pytest.approx(0.5)
    assert d["empty"].tolist() == [True, False] and d["full"].tolist() == [False, True]
    assert not torch.isnan(rp).any() and not torch.isnan(rm).any()
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        map_density(Recorder([0.0, 0.0]), images, maps * 2, 0, mean=MEAN, std=STD)
    with pytest.raises(ValueError, match="matching images"):
        map_density(Recorder([0.0, 0.0]), images, maps[:, :2], 0, mean=MEAN, std=STD)


# ========================================================================================
# insertion / deletion
# ========================================================================================
class RegionNet(nn.Module):
    """P(class 0) = mean pixel value over the region ``R`` (the first 16 of 64 pixels)."""

    def forward(self, x):
        p = x[:, 0].reshape(x.shape[0], -1)[:, :16].mean(1).clamp(1e-6, 1 - 1e-6)
        return torch.stack([p.log(), (1 - p).log()], 1)


def test_auc_trapezoid():
    assert auc(torch.ones(5)).item() == pytest.approx(1.0)
    assert auc(torch.linspace(1, 0, 11)).item() == pytest.approx(0.5)


def test_insertion_deletion_on_a_known_model():
    img = torch.zeros(1, 3, 8, 8)
    img.view(1, 3, -1)[:, :, :16] = 1.0  # the region R is white
    good = torch.zeros(1, 8, 8)
    good.view(1, -1)[:, :16] = torch.linspace(1, 0.5, 16)  # R first
    bad = 1 - good  # R last
    kw = dict(mean=(0, 0, 0), std=(1, 1, 1), step=8)
    a_good, c_good = insertion_deletion(RegionNet(), img, good, 0, "deletion", **kw)
    a_bad, _ = insertion_deletion(RegionNet(), img, bad, 0, "deletion", **kw)
    assert c_good.shape == (1, 9)
    assert c_good[0].tolist() == pytest.approx([1, 0.5, 0, 0, 0, 0, 0, 0, 0], abs=1e-5)
    assert a_good.item() == pytest.approx(0.125, abs=1e-5)
    assert a_bad.item() == pytest.approx(0.875, abs=1e-5)
    ins, c_ins = insertion_deletion(RegionNet(), img, good, 0, "insertion", substrate="black",
                                    batch_size=4, **kw)
    assert c_ins[0].tolist() == pytest.approx([0, 0.5, 1, 1, 1, 1, 1, 1, 1], abs=1e-5)
    assert ins.item() == pytest.approx(0.875, abs=1e-5)
    a4, c4 = insertion_deletion(RegionNet(), img, good, 0, "deletion", mean=(0, 0, 0),
                                std=(1, 1, 1), n_steps=4)
    assert c4.shape == (1, 5) and c4[0, 1].item() == pytest.approx(0, abs=1e-5)
    # default insertion canvas: the blurred image
    blur, cb = insertion_deletion(RegionNet(), img, good, 0, "insertion", **kw)
    assert 0 < cb[0, 0] < 1
    with pytest.raises(ValueError):
        insertion_deletion(RegionNet(), img, good, 0, "sideways", **kw)


def test_wilson_and_bootstrap_intervals():
    from cameras.metrics import bootstrap_ci, wilson

    for k, n in ((0, 10), (10, 10), (7, 20), (1, 3)):
        lo, hi = wilson(k, n)
        assert 0 <= lo <= k / n <= hi <= 1
    assert wilson(7, 20)[0] == pytest.approx(0.1812, abs=1e-3)
    assert all(math.isnan(v) for v in wilson(0, 0))
    with pytest.raises(ValueError):
        wilson(3, 2)
    v = np.random.default_rng(0).normal(1.0, 1.0, 400)
    lo, hi = bootstrap_ci(v)
    assert lo < v.mean() < hi and hi - lo == pytest.approx(2 * 1.96 / 20, rel=0.25)
    assert bootstrap_ci(v) == bootstrap_ci(v)  # seeded
    pairs = np.stack([v, v + np.random.default_rng(1).normal(0, 0.1, 400)], 1)
    lo, hi = bootstrap_ci(pairs, stat=lambda p: np.corrcoef(p[:, 0], p[:, 1])[0, 1])
    assert 0.98 < lo < hi <= 1

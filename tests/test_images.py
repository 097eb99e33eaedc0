"""Image loading (every mode, arrays, broken files), batches and the visualisation helpers."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from cameras.images import load_batch, load_image
from cameras.viz import as_map, colorize, overlay


def rgb(img: Image.Image) -> np.ndarray:
    assert isinstance(img, Image.Image) and img.mode == "RGB"
    return np.asarray(img)


# ----------------------------------------------------------------------------------------
# modes, from files
# ----------------------------------------------------------------------------------------
def test_rgb_jpeg_and_png_roundtrip(tmp_path):
    a = np.random.default_rng(0).integers(0, 256, (20, 30, 3), dtype=np.uint8)
    Image.fromarray(a).save(tmp_path / "a.png")
    np.testing.assert_array_equal(rgb(load_image(tmp_path / "a.png")), a)
    Image.fromarray(a).save(tmp_path / "a.jpg", quality=95)
    out = rgb(load_image(str(tmp_path / "a.jpg")))  # str path too
    assert out.shape == (20, 30, 3)


def test_gray(tmp_path):
    g = np.arange(0, 250, 10, dtype=np.uint8).reshape(5, 5)
    Image.fromarray(g, mode="L").save(tmp_path / "g.png")
    out = rgb(load_image(tmp_path / "g.png"))
    assert out.shape == (5, 5, 3)
    for c in range(3):
        np.testing.assert_array_equal(out[..., c], g)


def test_rgba_is_composited_on_white(tmp_path):
    a = np.zeros((2, 3, 4), dtype=np.uint8)
    a[0, 0] = (0, 0, 0, 0)  # fully transparent black -> white
    a[0, 1] = (255, 0, 0, 255)  # opaque red stays red
    a[0, 2] = (0, 0, 0, 128)  # half-transparent black -> mid gray
    a[1] = (0, 0, 255, 255)
    Image.fromarray(a, mode="RGBA").save(tmp_path / "a.png")
    out = rgb(load_image(tmp_path / "a.png"))
    np.testing.assert_array_equal(out[0, 0], (255, 255, 255))
    np.testing.assert_array_equal(out[0, 1], (255, 0, 0))
    assert np.all(np.abs(out[0, 2].astype(int) - 127) <= 1)
    np.testing.assert_array_equal(out[1, 0], (0, 0, 255))
    la = Image.fromarray(a[..., [0, 3]], mode="LA")
    assert rgb(load_image(la))[0, 0].tolist() == [255, 255, 255]


def test_palette_with_and_without_transparency(tmp_path):
    p = Image.new("P", (4, 4))
    p.putpalette([255, 0, 0, 0, 255, 0] + [0] * 762)
    p.putpixel((0, 0), 1)
    p.save(tmp_path / "p.png")
    out = rgb(load_image(tmp_path / "p.png"))
    assert out[0, 0].tolist() == [0, 255, 0] and out[1, 1].tolist() == [255, 0, 0]
    p.info["transparency"] = 0  # index 0 transparent -> white
    p.save(tmp_path / "pt.png", transparency=0)
    out = rgb(load_image(tmp_path / "pt.png"))
    assert out[1, 1].tolist() == [255, 255, 255] and out[0, 0].tolist() == [0, 255, 0]
    gif = tmp_path / "p.gif"
    Image.new("P", (4, 4), 1).save(gif)
    assert rgb(load_image(gif)).shape == (4, 4, 3)


def test_16bit_png_is_scaled(tmp_path):
    a = np.array([[0, 257, 32768, 65535]], dtype=np.uint16)
    img = Image.fromarray(a)
    assert img.mode == "I;16"
    img.save(tmp_path / "a16.png")
    reread = Image.open(tmp_path / "a16.png")
    assert reread.mode in ("I;16", "I")
    out = rgb(load_image(tmp_path / "a16.png"))
    np.testing.assert_array_equal(out[..., 0], [[0, 1, 128, 255]])
    np.testing.assert_array_equal(rgb(load_image(img))[..., 1], [[0, 1, 128, 255]])  # PIL I;16


def test_mode_I_and_F():
    i32 = Image.fromarray(np.array([[0, 65535]], dtype=np.int32))
    assert i32.mode == "I"
    assert rgb(load_image(i32))[0, :, 0].tolist() == [0, 255]
    with pytest.raises(ValueError, match="16-bit range"):
        load_image(Image.fromarray(np.array([[0, 70000]], dtype=np.int32)))
    f = Image.fromarray(np.array([[0.0, 0.5, 1.0]], dtype=np.float32))
    assert f.mode == "F"
    assert rgb(load_image(f))[0, :, 2].tolist() == [0, 128, 255]


def test_16bit_rgb_png(tmp_path):
    cv2 = pytest.importorskip("cv2")
    a = np.zeros((2, 2, 3), dtype=np.uint16)
    a[0, 0] = (65535, 32768, 0)  # RGB
    assert cv2.imwrite(str(tmp_path / "rgb16.png"), a[..., ::-1])  # cv2 writes BGR
    out = rgb(load_image(tmp_path / "rgb16.png"))
    assert np.all(np.abs(out[0, 0].astype(int) - [255, 128, 0]) <= 1)


def test_cmyk_bilevel_and_exif_orientation(tmp_path):
    assert rgb(load_image(Image.new("CMYK", (3, 2), (0, 0, 0, 0)))).tolist()[0][0] == [255, 255, 255]
    assert rgb(load_image(Image.new("1", (3, 2), 1))).shape == (2, 3, 3)
    im = Image.new("RGB", (40, 20), (200, 10, 10))
    exif = im.getexif()
    exif[0x0112] = 6  # rotate 90 degrees on display
    im.save(tmp_path / "rot.jpg", exif=exif)
    assert load_image(tmp_path / "rot.jpg").size == (20, 40)


# ----------------------------------------------------------------------------------------
# arrays
# ----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "array, expected",
    [
        (np.full((3, 4), 7, np.uint8), 7),
        (np.full((3, 4, 1), 7, np.uint8), 7),
        (np.full((3, 4, 3), 7, np.uint8), 7),
        (np.full((3, 4, 3), 0.5, np.float32), 128),
        (np.full((3, 4), 1.0, np.float64), 255),
        (np.full((3, 4, 3), 65535, np.uint16), 255),
        (np.full((3, 4), 200, np.int64), 200),
        (np.ones((3, 4), bool), 255),
        (np.concatenate([np.full((3, 4, 3), 9, np.uint8), np.full((3, 4, 1), 255, np.uint8)], -1), 9),
    ],
)
def test_arrays(array, expected):
    out = rgb(load_image(array))
    assert out.shape == (3, 4, 3)
    assert np.all(out == expected)


def test_rgba_array_transparent_is_white():
    a = np.zeros((2, 2, 4), np.uint8)
    assert np.all(rgb(load_image(a)) == 255)


@pytest.mark.parametrize(
    "array, match",
    [
        (np.full((3, 4, 3), 1.5, np.float32), r"\[0, 1\]"),
        (np.full((3, 4, 3), -0.1, np.float32), r"\[0, 1\]"),
        (np.full((3, 4), np.nan), "NaN"),
        (np.full((3, 4), 300, np.int32), "outside 0..255"),
        (np.zeros((3, 10, 12), np.uint8), "channel-first"),
        (np.zeros((2, 3, 4, 5), np.uint8), "expected an"),
        (np.zeros((0, 4, 3), np.uint8), "empty"),
    ],
)
def test_bad_arrays(array, match):
    with pytest.raises(ValueError, match=match):
        load_image(array)


def test_bad_types():
    with pytest.raises(TypeError, match="path"):
        load_image(42)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="dtype"):
        load_image(np.zeros((3, 3), np.complex64))


# ----------------------------------------------------------------------------------------
# broken files
# ----------------------------------------------------------------------------------------
def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.jpg"):
        load_image(tmp_path / "nope.jpg")


def test_text_file_named_jpg(tmp_path):
    p = tmp_path / "notes.jpg"
    p.write_text("this is not a JPEG\n")
    with pytest.raises(ValueError, match="notes.jpg.*not an image"):
        load_image(p)


def test_truncated_jpeg(tmp_path):
    a = np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(a).save(tmp_path / "full.jpg", quality=90)
    data = (tmp_path / "full.jpg").read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="cut.jpg"):
        load_image(tmp_path / "cut.jpg")


def test_empty_file_and_directory(tmp_path):
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(ValueError, match="empty.png"):
        load_image(tmp_path / "empty.png")
    with pytest.raises(ValueError, match="directory"):
        load_image(tmp_path)


# ----------------------------------------------------------------------------------------
# batches
# ----------------------------------------------------------------------------------------
def _to_tensor(img):
    return torch.from_numpy(np.array(img.resize((8, 8)))).permute(2, 0, 1).float() / 255


def test_load_batch(tmp_path):
    Image.new("L", (10, 12), 40).save(tmp_path / "g.png")
    items = [tmp_path / "g.png", np.zeros((5, 5, 3), np.uint8), Image.new("RGBA", (3, 3))]
    x = load_batch(items, _to_tensor)
    assert x.shape == (3, 3, 8, 8)
    assert load_batch(tmp_path / "g.png", _to_tensor).shape == (1, 3, 8, 8)
    with pytest.raises(ValueError, match="at least one"):
        load_batch([], _to_tensor)

    def varying(img):
        return torch.zeros(3, *img.size)

    with pytest.raises(ValueError, match="different shapes"):
        load_batch([np.zeros((4, 4)), np.zeros((5, 5))], varying)


# ----------------------------------------------------------------------------------------
# visualisation
# ----------------------------------------------------------------------------------------
def test_overlay_blends_and_resizes():
    img = np.full((20, 30, 3), 100, np.uint8)
    m = np.zeros((5, 6), np.float32)
    m[2, 3] = 1.0
    out = overlay(img, m, alpha=0.5)
    assert out.shape == (20, 30, 3) and out.dtype == np.uint8
    np.testing.assert_array_equal(overlay(img, m, alpha=0.0), img)
    np.testing.assert_array_equal(overlay(img / 255.0, np.ones((20, 30)), alpha=1.0), colorize(np.ones((20, 30))))
    tensor_img = torch.full((3, 20, 30), 100 / 255)  # channel-first tensor in [0, 1]
    np.testing.assert_array_equal(overlay(tensor_img, torch.from_numpy(m)[None]), out)
    with pytest.raises(ValueError, match="alpha"):
        overlay(img, m, alpha=2)
    with pytest.raises(ValueError, match="NaN"):
        overlay(img, np.full((4, 4), np.nan))
    with pytest.raises(ValueError, match="colormap"):
        overlay(img, m, cmap="no-such-map")


def test_as_map_normalises_out_of_range():
    m = as_map(np.array([[-2.0, 0.0], [2.0, 6.0]]))
    np.testing.assert_allclose(m, [[0.0, 0.25], [0.5, 1.0]])
    assert np.all(as_map(np.full((3, 3), 7.0)) == 0)
    with pytest.raises(ValueError, match="2-D"):
        as_map(np.zeros((2, 3, 3)))

"""Image loading: every format and mode to upright RGB, every bad file to one clear ImageLoadError."""

from __future__ import annotations

import io
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageOps

from explorer.core.classify.images import (
    DEFAULT_MAX_PIXELS,
    ImageLoadError,
    expand_inputs,
    load_image,
    resized_size,
    to_rgb,
)
from tests.netutil import bad_corpus, png_bytes, png_header_only

RNG = np.random.default_rng(7)


def _asymmetric(w: int = 48, h: int = 32) -> Image.Image:
    """Blocks of flat colour with a distinct top-left quadrant: any flip or rotation shows."""
    a = np.zeros((h, w, 3), np.uint8)
    a[:, :] = (30, 60, 90)
    a[: h // 2, : w // 2] = (250, 20, 20)
    a[h // 2 :, w // 2 :] = (20, 220, 40)
    a[: h // 4, w // 2 :] = (240, 240, 0)
    return Image.fromarray(a)


def _save(im: Image.Image, path: Path, fmt: str | None = None, **kw) -> Path:
    im.save(path, fmt, **kw)
    return path


def _exif(orientation: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return exif.tobytes()


def _png16_rgb(a: np.ndarray) -> bytes:
    """A 16-bit-per-channel RGB PNG (Pillow cannot write one)."""
    h, w, _ = a.shape
    raw = b"".join(b"\x00" + a[y].astype(">u2").tobytes() for y in range(h))

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


# ---------------------------------------------------------------- good files


@pytest.mark.parametrize("fmt,ext,lossless", [
    ("JPEG", ".jpg", False), ("PNG", ".png", True), ("WEBP", ".webp", False),
    ("BMP", ".bmp", True), ("TIFF", ".tif", True), ("GIF", ".gif", True),
])
def test_formats_load_as_rgb(tmp_path, fmt, ext, lossless):
    src = _asymmetric()
    kw = {"WEBP": {"lossless": True}, "JPEG": {"quality": 95, "subsampling": 0}}.get(fmt, {})
    p = _save(src, tmp_path / f"img{ext}", fmt, **kw)
    li = load_image(p)
    assert li.image.mode == "RGB" and li.image.size == src.size and li.format == fmt
    diff = np.abs(np.asarray(li.image, np.int16) - np.asarray(src, np.int16))
    assert diff.max() == 0 if lossless or fmt == "WEBP" else diff.mean() < 4


def test_same_result_from_bytes_and_path(tmp_path):
    p = _save(_asymmetric(), tmp_path / "a.png")
    a, b = load_image(p), load_image(p.read_bytes(), name="clip")
    assert b.source == "clip" and np.array_equal(np.asarray(a.image), np.asarray(b.image))


def test_gif_first_frame(tmp_path):
    red, blue = Image.new("RGB", (20, 10), (255, 0, 0)), Image.new("RGB", (20, 10), (0, 0, 255))
    p = tmp_path / "anim.gif"
    red.save(p, save_all=True, append_images=[blue], duration=100)
    assert Image.open(p).n_frames == 2
    assert load_image(p).image.getpixel((5, 5)) == (255, 0, 0)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_applied(tmp_path, orientation):
    upright = _asymmetric()
    # Store the image so that applying `orientation` gives `upright` back.
    inverse = {2: 2, 3: 3, 4: 4, 5: 5, 6: 8, 7: 7, 8: 6}
    stored = upright if orientation == 1 else ImageOps.exif_transpose(
        _with_exif(upright, inverse[orientation]))
    p = _save(stored, tmp_path / "o.png", exif=_exif(orientation))
    li = load_image(p)
    assert li.orientation == orientation
    assert np.array_equal(np.asarray(li.image), np.asarray(upright))
    # And it agrees with Pillow's own exif_transpose.
    assert np.array_equal(np.asarray(li.image), np.asarray(ImageOps.exif_transpose(Image.open(p)).convert("RGB")))
    jp = _save(stored, tmp_path / "o.jpg", exif=_exif(orientation), quality=95, subsampling=0)
    assert np.abs(np.asarray(load_image(jp).image, np.int16) - np.asarray(upright, np.int16)).mean() < 4


def _with_exif(im: Image.Image, orientation: int) -> Image.Image:
    buf = io.BytesIO()
    im.save(buf, "PNG", exif=_exif(orientation))
    return Image.open(io.BytesIO(buf.getvalue()))


def test_grayscale_and_bilevel(tmp_path):
    g = Image.fromarray(np.arange(256, dtype=np.uint8).reshape(16, 16))
    li = load_image(_save(g, tmp_path / "g.png"))
    a = np.asarray(li.image)
    assert li.mode == "L" and a.shape == (16, 16, 3)
    assert np.array_equal(a[..., 0], np.asarray(g)) and np.array_equal(a[..., 1], a[..., 2])
    b = load_image(_save(g.convert("1"), tmp_path / "b.png")).image
    assert set(np.unique(np.asarray(b))) <= {0, 255}


def test_palette_with_transparency_goes_onto_white(tmp_path):
    p_img = Image.new("P", (10, 10), 1)
    p_img.putpalette([0, 0, 0, 200, 30, 40] + [0] * 762)
    p_img.paste(0, (0, 0, 5, 10))  # left half: index 0, declared transparent
    path = tmp_path / "p.png"
    p_img.save(path, transparency=0)
    li = load_image(path)
    assert li.mode == "P"
    assert li.image.getpixel((1, 1)) == (255, 255, 255)
    assert li.image.getpixel((8, 8)) == (200, 30, 40)
    # A palette image without transparency keeps its colours.
    p_img.save(path)
    assert load_image(path).image.getpixel((1, 1)) == (0, 0, 0)


@pytest.mark.parametrize("mode", ["RGBA", "LA"])
def test_alpha_composited_on_white(tmp_path, mode):
    colour = (200, 0, 0, 128) if mode == "RGBA" else (200, 128)
    im = Image.new(mode, (8, 8), colour)
    im.putpixel((0, 0), (0, 0, 0, 0) if mode == "RGBA" else (0, 0))
    li = load_image(_save(im, tmp_path / "a.png"))
    assert li.image.getpixel((0, 0)) == (255, 255, 255)  # fully transparent → white, not black
    r, g, b = li.image.getpixel((4, 4))
    a = 128 / 255
    expect_r = 200 * a + 255 * (1 - a)
    expect_g = (0 if mode == "RGBA" else 200) * a + 255 * (1 - a)
    assert abs(r - expect_r) <= 1 and abs(g - expect_g) <= 1


def test_cmyk_jpeg_and_tiff(tmp_path):
    src = _asymmetric().convert("CMYK")
    for name in ("c.jpg", "c.tif"):
        li = load_image(_save(src, tmp_path / name, quality=95) if name.endswith("jpg") else _save(src, tmp_path / name))
        assert li.mode == "CMYK" and li.image.mode == "RGB"
        ref = np.asarray(src.convert("RGB"), np.int16)
        assert np.abs(np.asarray(li.image, np.int16) - ref).mean() < 4


def test_16_bit_greyscale_is_scaled_not_clipped(tmp_path):
    values = np.array([[0, 1000, 20000], [32768, 50000, 65535]], dtype=np.uint16)
    for name in ("g16.png", "g16.tif"):
        li = load_image(_save(Image.fromarray(values), tmp_path / name))
        assert li.mode.startswith("I")
        got = np.asarray(li.image)[..., 0].astype(int)
        assert np.abs(got - np.rint(values / 257)).max() <= 1  # Pillow's convert("L") gives 255 for 1000


def test_16_bit_rgb_png(tmp_path):
    a = RNG.integers(0, 65536, (6, 7, 3)).astype(np.uint16)
    p = tmp_path / "rgb16.png"
    p.write_bytes(_png16_rgb(a))
    got = np.asarray(load_image(p).image).astype(int)
    assert np.abs(got - (a >> 8)).max() <= 1


def test_float_tiff(tmp_path):
    a = np.linspace(0, 1, 12, dtype=np.float32).reshape(3, 4)
    got = np.asarray(load_image(_save(Image.fromarray(a), tmp_path / "f.tif")).image)[..., 0]
    assert np.abs(got.astype(int) - np.rint(a * 255)).max() <= 1


def test_to_rgb_keeps_rgb_untouched():
    im = _asymmetric()
    assert to_rgb(im) is im


# ---------------------------------------------------------------- bad files


def test_bad_files_each_give_one_clear_error(tmp_path):
    for name, (path, word) in bad_corpus(tmp_path).items():
        with pytest.raises(ImageLoadError) as info:
            load_image(path)
        msg = str(info.value)
        assert "\n" not in msg and msg.startswith(str(path)), name
        assert word.lower() in msg.lower(), (name, msg)
        assert info.value.reason, name


def test_pixel_limit_is_per_call_and_leaves_pillow_alone(tmp_path, monkeypatch):
    p = tmp_path / "a.png"
    p.write_bytes(png_bytes((100, 80)))
    before = Image.MAX_IMAGE_PIXELS
    with pytest.raises(ImageLoadError, match="limit of 0.005 megapixels"):
        load_image(p, max_pixels=5000)
    assert load_image(p, max_pixels=8000).image.size == (100, 80)
    assert Image.MAX_IMAGE_PIXELS == before
    # Pillow's global limit is not what decides: a tiny global limit does not refuse the image...
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    assert load_image(p, max_pixels=None).image.size == (100, 80)
    # ...and the header of a 900-megapixel bomb is refused before any pixel is decoded.
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", before)
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(png_header_only(30000, 30000))
    with pytest.raises(ImageLoadError, match=f"limit of {DEFAULT_MAX_PIXELS / 1e6:g} megapixels"):
        load_image(bomb)


def test_unreadable_file(tmp_path, monkeypatch):
    p = _save(_asymmetric(), tmp_path / "locked.png")
    if os.geteuid() != 0:  # root reads anything: simulate below instead
        p.chmod(0)
        try:
            with pytest.raises(ImageLoadError, match="permission denied"):
                load_image(p)
        finally:
            p.chmod(0o644)

    def deny(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(os, "open", deny)
    with pytest.raises(ImageLoadError, match="permission denied"):
        load_image(p)


# ---------------------------------------------------------------- folders and sizes


def test_expand_inputs(tmp_path):
    for name in ("b.png", "a.JPG", "notes.txt", ".hidden.jpg", "c.webp"):
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "d.jpg").write_bytes(b"x")
    other = tmp_path / "sub" / "named.txt"
    got = expand_inputs([tmp_path, other, tmp_path / "gone.jpg"])
    assert [p.name for p in got] == ["a.JPG", "b.png", "c.webp", "named.txt", "gone.jpg"]
    assert [p.name for p in expand_inputs([tmp_path], recursive=True)] == ["a.JPG", "b.png", "c.webp", "d.jpg"]


@pytest.mark.parametrize("size", [(400, 300), (300, 400), (256, 256), (1000, 37), (37, 1000), (500, 333)])
def test_resized_size_matches_torchvision(size):
    from torchvision.transforms import functional as F

    for short in (256, 342):
        assert F.resize(Image.new("RGB", size), [short]).size == resized_size(size, short)


def test_jpeg_draft_decodes_at_reduced_scale_only_when_big_enough(tmp_path):
    big = Image.fromarray(RNG.integers(0, 256, (23, 31, 3), dtype=np.uint8)).resize((1240, 920), Image.BICUBIC)
    p = _save(big, tmp_path / "big.jpg", quality=92)
    li = load_image(p, draft_short_side=256)
    # 1240×920 → resize target 345×256; 1/2 is the deepest reduction that stays above it.
    assert li.draft_scale == 2 and li.image.size == (620, 460) and li.size == (1240, 920)
    assert li.box == (0.0, 0.0, 620.0, 460.0)
    assert load_image(p, draft_short_side=342).draft_scale == 2
    assert load_image(p, draft_short_side=700).draft_scale == 1
    assert load_image(p).draft_scale == 1 and load_image(p).image.size == (1240, 920)
    png = _save(big, tmp_path / "big.png")
    assert load_image(png, draft_short_side=64).draft_scale == 1

"""Read image files for classification: any common format in, an upright RGB PIL image out.

Every way a file can be bad (missing, unreadable, a directory, empty, not an image, truncated,
corrupt, too many pixels) becomes one `ImageLoadError` with a one-line message, so that a batch can
report it against the file and go on with the others.

Conversion policy, chosen to match what a photo viewer shows:
- EXIF orientation is applied (the image comes out upright).
- Transparency (RGBA, LA, PA, palette with a transparent index) is composited onto white: the colour
  under a fully transparent pixel is arbitrary (often black), whereas viewers show white there.
- 16-bit and 32-bit integer greyscale are scaled to 8 bits (value / 257, 0..65535 → 0..255); Pillow's
  own conversion would clip everything above 255 to white. Float images are taken as 0..1 when their
  maximum is ≤ 1, else as 0..255.
- CMYK and everything else go through Pillow's conversion to RGB.

The pixel limit (`max_pixels`, a decompression-bomb guard) is checked from the header, before any pixel
is decoded, per call: the process-wide `PIL.Image.MAX_IMAGE_PIXELS` is neither read nor changed by
this module's own check. (Pillow's check still runs inside GIF/TIFF decoding with its global limit.)
A tiny image can still make the pipeline allocate a huge one: `Resize(256)` of a 1×100,000 PNG is
256×25,600,000 pixels. Given the short side the caller resizes to, the header is also checked for an
aspect ratio above `MAX_ASPECT_RATIO` and for a resized image above `max_pixels`.

Only regular files are read, and at most `max_bytes` of them: a FIFO, a device (`/dev/zero`) or a
socket is refused from its `stat` without being opened for reading, so none can stall a batch.
"""

from __future__ import annotations

import io
import os
import stat
import struct
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from explorer.core.text import first_line

#: File name extensions taken from a folder (upper or lower case).
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".webp", ".bmp", ".dib", ".tif", ".tiff", ".gif")
#: Pillow format names we decode; anything else is "not an image we read" (EPS, for one, would run
#: Ghostscript).
FORMATS = ("JPEG", "PNG", "WEBP", "BMP", "TIFF", "GIF")
#: Default decompression-bomb limit: 100 megapixels (a 12 MP photo is far below it).
DEFAULT_MAX_PIXELS = 100_000_000
#: The largest `max_pixels` a user may ask for (one gigapixel: 3 GB of RGB once decoded).
MAX_PIXELS_LIMIT = 1_000_000_000
#: Default limit on an image file's size in bytes (a 100-megapixel uncompressed TIFF is 300 MB).
DEFAULT_MAX_BYTES = 512 * 1024 * 1024
#: Widest accepted aspect ratio, long side over short side: a 100:1 image resized to a 342-pixel
#: short side is 342×34,200 (12 megapixels); a 1×100,000 strip would be 342×34,200,000.
MAX_ASPECT_RATIO = 100

_EXIF_ORIENTATION = 0x0112


class ImageLoadError(Exception):
    """An input could not be turned into an image; `str(error)` is one line for the user."""

    def __init__(self, source: str, reason: str):
        super().__init__(f"{source}: {reason}")
        self.source = source
        self.reason = reason


@dataclass
class LoadedImage:
    """An upright RGB image and what it was made from."""

    image: Image.Image
    source: str
    format: str
    #: (width, height) as stored in the file, before orientation and draft reduction.
    stored_size: tuple[int, int]
    mode: str  # the file's own mode, e.g. "P", "I;16", "CMYK"
    orientation: int = 1  # EXIF orientation tag (1 = upright)
    #: JPEG DCT reduction used when decoding (1 = full resolution).
    draft_scale: int = 1
    #: The region of `image` that the full stored image maps to, for an exact resize after a
    #: draft decode (the last row/column of a reduced JPEG may cover a partial block).
    box: tuple[float, float, float, float] = field(default=(0.0, 0.0, 0.0, 0.0))
    data: bytes | None = None  # the encoded file, kept when asked for (GPU decoding)

    @property
    def size(self) -> tuple[int, int]:
        """Upright (width, height) of the full-resolution image."""
        w, h = self.stored_size
        return (h, w) if self.orientation in (5, 6, 7, 8) else (w, h)


def read_bytes(path: str | os.PathLike, *, max_bytes: int | None = DEFAULT_MAX_BYTES) -> bytes:
    """The contents of regular file `path` (at most `max_bytes`), or ImageLoadError saying why not.

    A FIFO, device or socket is refused from `stat` before any open; the file is then opened
    non-blocking and checked again (it may have been swapped meanwhile), and never read past the
    limit, so that no path can block or exhaust the process."""
    p = Path(path)
    source = str(p)
    check_regular_file(p)
    try:
        fd = os.open(p, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    except FileNotFoundError:
        raise ImageLoadError(source, "no such file") from None
    except IsADirectoryError:
        raise ImageLoadError(source, "is a directory, not an image file") from None
    except PermissionError:
        raise ImageLoadError(source, "permission denied") from None
    except OSError as e:
        raise ImageLoadError(source, f"cannot read: {e.strerror or e}") from None
    try:
        st = os.fstat(fd)
        _check_regular(source, st.st_mode)
        if max_bytes is not None and st.st_size > max_bytes:
            raise ImageLoadError(source, f"file of {_mib(st.st_size)} exceeds the limit of {_mib(max_bytes)}")
        limit = max_bytes + 1 if max_bytes is not None else -1
        with os.fdopen(fd, "rb", closefd=True) as f:
            fd = -1
            data = f.read(limit)
    except OSError as e:
        raise ImageLoadError(source, f"cannot read: {e.strerror or e}") from None
    finally:
        if fd >= 0:
            os.close(fd)
    if max_bytes is not None and len(data) > max_bytes:  # it grew while being read
        raise ImageLoadError(source, f"file exceeds the limit of {_mib(max_bytes)}")
    if not data:
        raise ImageLoadError(source, "empty file")
    return data


def check_regular_file(path: str | os.PathLike) -> None:
    """ImageLoadError unless `path` is a regular file, from `stat` alone: nothing is opened, so a FIFO
    cannot block and a device is never read."""
    source = str(path)
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise ImageLoadError(source, "no such file") from None
    except PermissionError:
        raise ImageLoadError(source, "permission denied") from None
    except OSError as e:
        raise ImageLoadError(source, f"cannot read: {e.strerror or e}") from None
    _check_regular(source, mode)


def _check_regular(source: str, mode: int) -> None:
    if stat.S_ISDIR(mode):
        raise ImageLoadError(source, "is a directory, not an image file")
    if not stat.S_ISREG(mode):
        raise ImageLoadError(source, f"is {_file_kind(mode)}, not a regular file; only regular files are read")


def _file_kind(mode: int) -> str:
    for test, what in ((stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return what
    return "not a regular file"


def _mib(n: int) -> str:
    return f"{n / 2**20:.0f} MiB" if n >= 2**20 else f"{n} bytes"


def check_resize(
    size: tuple[int, int],
    short_side: int | None,
    source: str = "<image>",
    *,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
) -> None:
    """Refuse an image of `size` (width, height) whose Resize(`short_side`) would be absurd: an aspect
    ratio above MAX_ASPECT_RATIO, or more than `max_pixels` after the resize. Checked from the header,
    before anything is decoded or resized; nothing is checked when `short_side` is None."""
    if short_side is None:
        return
    w, h = size
    short, long = min(w, h), max(w, h)
    if short <= 0:
        raise ImageLoadError(source, f"corrupt image size {w}×{h}")
    if long > MAX_ASPECT_RATIO * short:
        raise ImageLoadError(
            source,
            f"{w}×{h} has an aspect ratio of {_ratio_text(long / short)}:1, above the limit of {MAX_ASPECT_RATIO}:1 "
            f"(resizing its short side to {short_side} would make it {_resized_text(size, short_side)})",
        )
    rw, rh = resized_size(size, short_side)
    if max_pixels is not None and rw * rh > max_pixels:
        raise ImageLoadError(
            source,
            f"{w}×{h} resized to {rw}×{rh} = {rw * rh / 1e6:.0f} megapixels exceeds the limit of "
            f"{max_pixels / 1e6:g} megapixels",
        )


def _ratio_text(r: float) -> str:
    return f"{r:,.0f}" if r >= 1000 or r == int(r) else f"{r:.1f}"  # 100.5:1 must not read as 100:1


def _resized_text(size: tuple[int, int], short_side: int) -> str:
    rw, rh = resized_size(size, short_side)
    return f"{rw:,}×{rh:,} pixels"


def open_image(
    data: bytes,
    source: str = "<bytes>",
    *,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    resize_short_side: int | None = None,
):
    """Identify encoded image `data` from its header (nothing decoded yet) and enforce `max_pixels`
    (and, given the short side it will be resized to, `check_resize`).

    Returns a lazy PIL image. Pillow's `Image.open` would apply its own global limit (and warn);
    this goes through the format plugins directly so that the limit is this call's.
    """
    if not data:
        raise ImageLoadError(source, "empty file")
    Image.preinit()
    fp = io.BytesIO(data)
    prefix = data[:16]
    im = None
    for fmt in FORMATS:
        if fmt not in Image.OPEN:
            Image.init()
        if fmt not in Image.OPEN:
            continue
        factory, accept = Image.OPEN[fmt]
        ok = accept is None or accept(prefix)
        if not ok or isinstance(ok, str):
            continue
        fp.seek(0)
        try:
            im = factory(fp, "")
            break
        except Image.DecompressionBombError as e:
            raise ImageLoadError(source, f"too many pixels (possible decompression bomb): {first_line(e)}") from None
        except (SyntaxError, IndexError, TypeError, ValueError, struct.error, OSError, EOFError) as e:
            raise ImageLoadError(source, f"corrupt {fmt} header ({first_line(e)})") from None
    if im is None:
        raise ImageLoadError(source, f"not an image file that can be read ({_describe_magic(data)})")
    w, h = im.size
    if w <= 0 or h <= 0:
        raise ImageLoadError(source, f"corrupt {im.format} header (size {w}×{h})")
    if max_pixels is not None and w * h > max_pixels:
        raise ImageLoadError(
            source,
            f"{w}×{h} = {w * h / 1e6:.0f} megapixels exceeds the limit of {max_pixels / 1e6:g} "
            "megapixels (possible decompression bomb)",
        )
    check_resize((w, h), resize_short_side, source, max_pixels=max_pixels)
    return im


def load_image(
    source: str | os.PathLike | bytes,
    *,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    draft_short_side: int | None = None,
    resize_short_side: int | None = None,
    keep_data: bool = False,
    name: str | None = None,
    max_bytes: int | None = DEFAULT_MAX_BYTES,
) -> LoadedImage:
    """Decode `source` (a path or the bytes of a file) into an upright RGB image.

    draft_short_side: the short side the caller will resize to (torchvision's Resize(n) rule). A JPEG
    is then decoded at the largest DCT reduction (1/2, 1/4, 1/8) that keeps it at least as large as
    that resize in both dimensions — several times faster for big photos — and the caller must finish
    with that resize, mapping `box` (the full image's extent in the reduced one). Other formats
    ignore it.
    resize_short_side: the short side the caller will resize to (defaults to `draft_short_side`):
    the image is refused from its header when that resize would be absurd (`check_resize`).
    """
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        label = name or "<bytes>"
    else:
        label = name or str(source)
        data = read_bytes(source, max_bytes=max_bytes)
    if resize_short_side is None:
        resize_short_side = draft_short_side
    im = open_image(data, label, max_pixels=max_pixels, resize_short_side=resize_short_side)
    stored_size, mode, fmt = im.size, im.mode, im.format or "?"
    scale = 1
    if draft_short_side is not None and fmt in ("JPEG", "MPO") and mode in ("RGB", "L", "YCbCr", "CMYK"):
        drafted = im.draft(mode, resized_size(stored_size, draft_short_side))
        if drafted is not None:
            scale = max(1, round(stored_size[0] / drafted[1][2]))
    try:
        if getattr(im, "n_frames", 1) > 1:
            im.seek(0)
        im.load()
    except Image.DecompressionBombError as e:
        raise ImageLoadError(label, f"too many pixels (possible decompression bomb): {first_line(e)}") from None
    except (OSError, SyntaxError, ValueError, IndexError, struct.error, EOFError, MemoryError) as e:
        raise ImageLoadError(label, _decode_failure(fmt, e)) from None
    # Only now: for some formats (PNG) reading the EXIF decodes the pixels, and a decoding error
    # must surface from load() above, not be swallowed here.
    orientation = exif_orientation(im)
    try:
        rgb = to_rgb(im)
    except (OSError, ValueError) as e:
        raise ImageLoadError(label, f"cannot convert {mode} image to RGB: {first_line(e)}") from None
    box = (0.0, 0.0, stored_size[0] / scale, stored_size[1] / scale)
    if orientation != 1:
        # What ImageOps.exif_transpose does, done here because the RGB copy no longer has the EXIF.
        box = _orient_box(box, rgb.size, orientation)
        rgb = rgb.transpose(_TRANSPOSE[orientation])
    return LoadedImage(
        image=rgb,
        source=label,
        format=fmt,
        stored_size=stored_size,
        mode=mode,
        orientation=orientation,
        draft_scale=scale,
        box=box,
        data=data if keep_data else None,
    )


def exif_orientation(im: Image.Image) -> int:
    """The EXIF orientation tag (1..8) of `im`, 1 when absent or unreadable."""
    try:
        o = int(im.getexif().get(_EXIF_ORIENTATION, 1) or 1)
    except Exception:  # a broken EXIF block is no reason to refuse the pixels
        return 1
    return o if o in range(1, 9) else 1


def resized_size(size: tuple[int, int], short_side: int) -> tuple[int, int]:
    """(width, height) after torchvision's Resize(short_side) of an image of `size` (width, height)."""
    w, h = size
    short, long = (w, h) if w <= h else (h, w)
    new_long = int(short_side * long / short)  # torchvision truncates
    return (short_side, new_long) if w <= h else (new_long, short_side)


def to_rgb(im: Image.Image) -> Image.Image:
    """Convert any Pillow mode to 8-bit RGB following the module's policy (alpha onto white)."""
    mode = im.mode
    if mode == "RGB":
        return im
    if mode == "P":
        if "transparency" in im.info or im.palette is not None and im.palette.mode == "RGBA":
            return _on_white(im.convert("RGBA"))
        return im.convert("RGB")
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        return _on_white(im.convert("RGBA"))
    if mode in ("L", "1") and "transparency" in im.info:
        return _on_white(im.convert("RGBA"))
    if mode.startswith("I;16") or mode == "I":
        import numpy as np

        a = np.asarray(im).astype(np.float64)
        a = np.clip(a, 0, 65535) / 257.0
        return Image.fromarray(np.rint(a).astype(np.uint8), "L").convert("RGB")
    if mode == "F":
        import numpy as np

        a = np.nan_to_num(np.asarray(im, dtype=np.float64), nan=0.0)
        if a.size and np.nanmax(a) <= 1.0:
            a = a * 255.0
        return Image.fromarray(np.rint(np.clip(a, 0, 255)).astype(np.uint8), "L").convert("RGB")
    return im.convert("RGB")


def expand_inputs(paths: Iterable[str | os.PathLike], *, recursive: bool = False) -> list[Path]:
    """Files to classify: folders become their image files (sorted by name, hidden ones skipped).

    Paths that are not folders are kept as given — whether or not they exist or look like images —
    so that each bad one is reported against its name rather than silently dropped. Within a folder,
    every non-directory entry with an image extension is kept, a FIFO or a broken link included
    (`read_bytes` refuses those with a reason): only `stat` is used, nothing is opened. A file named twice
    (directly and through its folder, or by two spellings of its path) is kept once, where it first appears.
    """
    out: list[Path] = []
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            pattern = "**/*" if recursive else "*"
            found = [
                f
                for f in p.glob(pattern)
                if f.suffix.lower() in IMAGE_EXTENSIONS
                and not any(part.startswith(".") for part in f.relative_to(p).parts)
                and not f.is_dir()
            ]
            out.extend(sorted(found, key=lambda f: str(f.relative_to(p)).lower()))
        else:
            out.append(p)
    return unique_files(out)


def unique_files(paths: Iterable[Path]) -> list[Path]:
    """`paths` without the repeats of a file (the same real path: another spelling, a symbolic link), in order."""
    seen: set[str] = set()
    out = []
    for p in paths:
        try:
            key = os.path.normcase(os.path.realpath(p))
        except (OSError, ValueError):  # (a name with a NUL byte): kept, and refused by name when read
            key = str(p)
        if key not in seen:
            seen.add(key)
            out.append(p)
    return out


def _on_white(rgba: Image.Image) -> Image.Image:
    background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    return Image.alpha_composite(background, rgba).convert("RGB")


_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


def _orient_box(box, size, orientation: int):
    """Map a (0, 0, bw, bh) box within an image of `size` through the EXIF transposition."""
    _, _, bw, bh = box
    dw, dh = size
    x, y = (0.0, bw, dw), (0.0, bh, dh)

    def flip(iv):
        lo, hi, d = iv
        return (d - hi, d - lo, d)

    new_x, new_y = {
        2: (flip(x), y),
        3: (flip(x), flip(y)),
        4: (x, flip(y)),
        5: (y, x),  # transpose
        6: (flip(y), x),  # rotate 270 (90° clockwise)
        7: (flip(y), flip(x)),  # transverse
        8: (y, flip(x)),  # rotate 90
    }[orientation]
    return (new_x[0], new_y[0], new_x[1], new_y[1])


def _decode_failure(fmt: str, e: BaseException) -> str:
    text = first_line(e)
    if "truncated" in text or isinstance(e, EOFError) or "premature end" in text.lower():
        return f"truncated {fmt} file ({text})"
    return f"corrupt {fmt} data ({text})"



_MAGIC = (
    (b"%PDF", "a PDF document"),
    (b"PK\x03\x04", "a ZIP archive"),
    (b"\x7fELF", "an executable"),
    (b"<?xml", "an XML/SVG document"),
    (b"<svg", "an SVG drawing, which is not supported"),
    (b"GIF8", "a broken GIF"),
    (b"\xff\xd8", "a broken JPEG"),
    (b"\x89PNG", "a broken PNG"),
)


def _describe_magic(data: bytes) -> str:
    for magic, what in _MAGIC:
        if data.startswith(magic):
            return f"looks like {what}"
    head = data[:512]
    if all(32 <= b < 127 or b in (9, 10, 13) for b in head):
        return "looks like text"
    return f"unknown format, starts with {data[:8].hex(' ')}"

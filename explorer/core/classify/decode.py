"""Images into network inputs, as the classifier makes them: the weights' own transform after a PIL
decode on the CPU (optionally at a reduced JPEG scale, `fast_decode`), or after nvjpeg or PIL on a GPU.

`Decoder` holds the transform and the decode settings and knows nothing of the classifier; the device
it decodes to is passed with each call. torch is imported when a method needs it, not at import.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Union

from explorer.core.classify.images import (
    ImageLoadError,
    LoadedImage,
    check_resize,
    exif_orientation,
    load_image,
    open_image,
    read_bytes,
    resized_size,
    to_rgb,
)
from explorer.core.classify.results import FAST_DECODE_NOTICE, ClassificationResult, ms_since
from explorer.core.text import first_line

#: nvjpeg decodes a chroma-subsampled JPEG only when its short side is at least this many times the
#: transform's resize size (see `Decoder.nvjpeg_suits`); PIL decodes the smaller ones. 8: a 12 MP
#: photo still goes to nvjpeg for GoogLeNet and Inception v3.
NVJPEG_MIN_SCALE = 8
#: Most pixels nvjpeg decodes in one call (the decoded images of one call are alive together:
#: 3 bytes a pixel, so about 0.8 GB).
DECODE_PIXELS_PER_CALL = 256_000_000

ImageInput = Union[str, os.PathLike, bytes, LoadedImage, Any]  # Any: a PIL image
_FILE_INPUTS = (str, os.PathLike, bytes, bytearray, memoryview)


@dataclass
class JpegJob:
    """A JPEG of a GPU batch, read as far as its header."""

    result: ClassificationResult
    data: bytes
    orientation: int
    header_ms: float
    pixels: int


class Decoder:
    """Decodes and preprocesses images with `transforms` (the weights' `transforms()`).

    notices: a list that running short of GPU memory is told in (the classifier's)."""

    def __init__(self, transforms, *, max_pixels: int | None, fast_decode: bool, notices: list[str]):
        self.transforms = transforms
        self.resize_size = int(transforms.resize_size[0])
        self.crop_size = int(transforms.crop_size[0])
        self.max_pixels = max_pixels
        #: Decode big JPEGs at a reduced DCT scale on the CPU (read at each image).
        self.fast_decode = fast_decode
        self.notices = notices

    # ------------------------------------------------------------------ CPU

    def load_cpu(self, src, label: str, draft: bool | None = None) -> LoadedImage:
        """One input decoded by PIL, upright and RGB (at a reduced scale when `draft`, by default
        `fast_decode`); ImageLoadError for a bad file or one too large."""
        draft = self.fast_decode if draft is None else draft
        if isinstance(src, LoadedImage):
            check_resize(src.size, self.resize_size, label, max_pixels=self.max_pixels)
            return src
        if isinstance(src, _FILE_INPUTS):
            return load_image(
                src,
                max_pixels=self.max_pixels,
                draft_short_side=self.resize_size if draft else None,
                resize_short_side=self.resize_size,
                name=label,
            )
        # A PIL image (pasted from the clipboard, say).
        size = getattr(src, "size", None)
        if isinstance(size, tuple) and len(size) == 2:
            check_resize(size, self.resize_size, label, max_pixels=self.max_pixels)
        try:
            rgb = to_rgb(src)
        except (AttributeError, OSError, ValueError) as e:
            raise ImageLoadError(label, f"not an image: {e}") from None
        w, h = rgb.size
        return LoadedImage(image=rgb, source=label, format="", stored_size=(w, h), mode=src.mode, box=(0, 0, w, h))

    def preprocess_pil(self, li: LoadedImage):
        """The network input (3, crop, crop) of a loaded image: `weights.transforms()` on it."""
        return self.transforms(self.resized_pil(li))

    def resized_pil(self, li: LoadedImage):
        """`li` resized as the transform's first step resizes it (PIL only, no torch operation: this
        runs on the decode threads). The transform then finds the image at its size and only copies
        it, so `self.transforms(result)` is `self.transforms(li.image)` bit for bit."""
        im = li.image
        if li.draft_scale > 1:
            # Finish the reduced decode with the transform's own filter, to the size it would have
            # produced from the full image, mapping the full image's extent (`box`) exactly.
            from PIL import Image

            mode = getattr(getattr(self.transforms, "interpolation", None), "value", "bilinear")
            resample = Image.Resampling.BICUBIC if mode == "bicubic" else Image.Resampling.BILINEAR
            return im.resize(resized_size(li.size, self.resize_size), resample, box=li.box)
        from torchvision.transforms import functional as F

        tf = self.transforms
        return F.resize(im, list(tf.resize_size), interpolation=tf.interpolation, antialias=tf.antialias)

    def prepare_cpu(self, src, label: str) -> tuple[ClassificationResult, Any]:
        """Load one image and resize it as the transform does: its result (with the error, if any)
        and the resized PIL image (None when it cannot be classified). PIL work only, which releases
        the GIL: it runs on the decode threads (a torch operation there would start one more OpenMP
        team per thread, spinning beside the forward's)."""
        r = ClassificationResult(source=label, device="cpu")
        t0 = time.perf_counter()
        try:
            li = self.load_cpu(src, label)
        except ImageLoadError as e:
            r.error = e.reason
            r.timings_ms = {"decode": ms_since(t0)}
            return r, None
        t1 = time.perf_counter()
        try:
            resized = self.resized_pil(li)
        except (MemoryError, OSError, ValueError) as e:  # this image only: the batch goes on
            r.error = f"cannot preprocess: {first_line(e)}"
            r.timings_ms = {"decode": (t1 - t0) * 1e3}
            return r, None
        r.image_size = li.size
        r.timings_ms = {"decode": (t1 - t0) * 1e3, "preprocess": ms_since(t1)}
        if li.draft_scale > 1:
            r.add_notice(FAST_DECODE_NOTICE)
        return r, resized

    def finish_cpu(self, r: ClassificationResult, resized):
        """The rest of the transform on a `prepare_cpu` image (crop, tensor, normalisation), on the
        calling thread; None, with `r.error` set, when it fails."""
        t0 = time.perf_counter()
        try:
            x = self.transforms(resized)
        except (MemoryError, RuntimeError, ValueError) as e:
            r.error = f"cannot preprocess: {first_line(e)}"
            r.timings_ms = {"decode": r.timings_ms["decode"]}
            return None
        r.timings_ms["preprocess"] += ms_since(t0)
        return x

    def input_rgb(self, x):
        """A normalised (3, H, W) network input as the (H, W, 3) uint8 picture it was made from."""
        import torch

        mean = torch.tensor(self.transforms.mean, device=x.device).view(3, 1, 1)
        std = torch.tensor(self.transforms.std, device=x.device).view(3, 1, 1)
        rgb = ((x.float() * std + mean).clamp(0, 1) * 255).round().byte()
        return rgb.permute(1, 2, 0).contiguous().cpu().numpy()

    # ------------------------------------------------------------------ GPU

    def decode_jpegs_cuda(self, datas: list[bytes], device: str):
        """nvjpeg decodes JPEG files to uint8 RGB (3, H, W) tensors on `device`, in one call.

        The operator torchvision's `decode_jpeg(device="cuda")` runs, called directly: that wrapper
        is deprecated in torchvision 0.29 (in favour of TorchCodec) and warns on every call."""
        import torch
        import torchvision.io  # noqa: F401 - registers torch.ops.image
        from torchvision.io import ImageReadMode

        tensors = [torch.frombuffer(bytearray(d), dtype=torch.uint8) for d in datas]
        return torch.ops.image.decode_jpegs_cuda(tensors, ImageReadMode.RGB.value, torch.device(device))

    def warm_up_nvjpeg(self, device: str) -> None:
        """Initialise nvjpeg on `device` with a tiny JPEG; a notice when it cannot run (PIL decodes
        JPEGs then)."""
        import torch

        try:
            self.decode_jpegs_cuda([_tiny_jpeg()], device)
        except torch.cuda.OutOfMemoryError:
            raise
        except RuntimeError as e:  # PIL decodes JPEGs that nvjpeg refuses: a notice, not a failure
            self.notices.append(f"nvjpeg unavailable, JPEGs are decoded on the CPU: {first_line(e)}")

    def nvjpeg_suits(self, im, data: bytes) -> bool:
        """Whether nvjpeg decodes this JPEG (`im`, PIL's image of `data` read as far as its header).

        nvjpeg upsamples subsampled chroma more simply than libjpeg (PIL), so on colour edges its
        pixels differ by up to tens of grey levels (measured on an H100, `bench_gpu_input`: a
        512×512 photo 20 levels at most, a 300×200 noise file 76). The transform's antialiased
        downscale averages that away as the image grows (`bench_gpu_input --sweep`): from
        NVJPEG_MIN_SCALE × the resize size, photos and noise differ by at most 2 levels, 25-pixel
        blocks of saturated colours by 5, the mean by 0.3 at most; and large files are where nvjpeg
        saves time (12 MP: 10 ms against PIL's 180). Greyscale and 4:4:4 JPEGs have no subsampled
        chroma: nvjpeg matches PIL at any size. The rest is decoded by PIL on the CPU, as the
        reference."""
        from PIL import JpegImagePlugin

        if im.format != "JPEG" or im.mode not in ("RGB", "L", "YCbCr") or not _ends_like_jpeg(data):
            return False
        if im.mode == "L" or JpegImagePlugin.get_sampling(im) == 0:
            return True
        return min(im.size) >= NVJPEG_MIN_SCALE * self.resize_size

    def decode_on_device(self, src, label: str, device: str):
        """One image as the CUDA path decodes it: (uint8 (C, H, W) on `device`, upright (width,
        height), the PIL image when PIL decoded it else None). nvjpeg for JPEGs, PIL otherwise and
        for a JPEG that nvjpeg refuses (PIL then explains what is wrong with it)."""
        import torch
        from torchvision.transforms.functional import pil_to_tensor

        if isinstance(src, _FILE_INPUTS):
            data = read_bytes(src) if isinstance(src, (str, os.PathLike)) else bytes(src)
            im = open_image(data, label, max_pixels=self.max_pixels, resize_short_side=self.resize_size)
            if self.nvjpeg_suits(im, data):
                try:
                    x = orient_tensor(self.decode_jpegs_cuda([data], device)[0], exif_orientation(im))
                    return x, (int(x.shape[2]), int(x.shape[1])), None
                except torch.cuda.OutOfMemoryError:
                    raise
                except RuntimeError:
                    pass
            src = data
        li = self.load_cpu(src, label, draft=False)
        return pil_to_tensor(li.image).to(device), li.size, li.image

    def device_input(self, src, label: str, device: str):
        """The network input for one image as the CUDA path makes it: (3, crop, crop) on `device`."""
        return self.transforms(self.decode_on_device(src, label, device)[0])

    def read_for_device(self, src, label: str, r: ClassificationResult):
        """The first step of a GPU batch for one input: a `JpegJob` (its header read) when nvjpeg is
        to decode it, else (r, the PIL-decoded LoadedImage, ms); ImageLoadError for a bad file."""
        t0 = time.perf_counter()
        data = None
        if isinstance(src, _FILE_INPUTS):
            data = bytes(src) if not isinstance(src, (str, os.PathLike)) else read_bytes(src)
            im = open_image(data, label, max_pixels=self.max_pixels, resize_short_side=self.resize_size)
            if self.nvjpeg_suits(im, data):
                orientation = exif_orientation(im)  # a JPEG's EXIF is in its header
                w, h = im.size
                r.image_size = (h, w) if orientation in (5, 6, 7, 8) else (w, h)
                return JpegJob(r, data, orientation, ms_since(t0), w * h)
        li = self.load_cpu(src if data is None else data, label, draft=False)
        r.image_size = li.size
        return r, li, ms_since(t0)

    def decode_jpeg_group(
        self, group: list[JpegJob], events, others: list, device: str
    ) -> list[tuple[JpegJob, Any, Any]]:
        """nvjpeg decodes `group` in one batched call (torchvision's batched `decode_jpeg` on a list, whose
        operator decodes the baseline JPEGs of the list together, on the hardware decoder where the GPU
        has one): (job, uint8 (C, H, W) on the device, decode span) each.
        nvjpeg refuses the whole list when one image fails, and reports its own lack of memory as the
        same "Error while decoding JPEG images": the group is halved until the failure is one image,
        which is handed to PIL (appended to `others`: it decodes, or explains, what nvjpeg cannot)
        unless GPU memory is what ran out (OutOfMemoryError). Running short of memory is said in the
        results' notice."""
        import torch

        start = events.mark()
        try:
            images = self.decode_jpegs_cuda([job.data for job in group], device)
        except torch.cuda.OutOfMemoryError:
            raise
        except RuntimeError as e:
            torch.cuda.empty_cache()  # what the allocator caches is out of nvjpeg's reach
            need = sum(job.pixels for job in group) * 3 * 2  # the decoded images and nvjpeg's buffers
            short = nvjpeg_out_of_memory(e, need, device)
            if len(group) == 1:
                self._decode_one_with_pil(group[0], e, short, others)
                return []
            if short:
                notice = (f"nvjpeg ran out of GPU memory decoding {len(group)} images at once; "
                          "decoding them in smaller groups")
                if not self.notices or self.notices[-1] != notice:
                    self.notices.append(notice)
                for job in group:
                    job.result.add_notice(notice)
            half = len(group) // 2
            return (self.decode_jpeg_group(group[:half], events, others, device)
                    + self.decode_jpeg_group(group[half:], events, others, device))
        span = (start, events.mark(), len(group))
        return [(job, x, span) for job, x in zip(group, images)]

    def _decode_one_with_pil(self, job: JpegJob, error: BaseException, short: bool, others: list) -> None:
        """A JPEG nvjpeg refused on its own: PIL decodes it into `others` (result, uint8 CPU tensor,
        ms), or its result says why not."""
        import torch
        from torchvision.transforms.functional import pil_to_tensor

        if short:
            raise torch.cuda.OutOfMemoryError(
                f"nvjpeg ran out of GPU memory decoding {job.result.source} ({first_line(error)})") from None
        t1 = time.perf_counter()
        try:
            li = self.load_cpu(job.data, job.result.source, draft=False)
        except ImageLoadError as err:
            job.result.error = err.reason
            job.result.timings_ms = {"decode": job.header_ms + ms_since(t1)}
            return
        others.append((job.result, pil_to_tensor(li.image), job.header_ms + ms_since(t1)))


class CpuPreprocess:
    """The CPU path's network input (3, crop, crop) for one image, exactly as a CPU batch makes it:
    callable, and in two halves for a decode pool: `prepare(src)` decodes and resizes with PIL only
    (it releases the GIL, and starts no OpenMP team beside the forward's), `finish(resized)` is the
    rest of the transform (crop, tensor, normalisation), on the calling thread. ImageLoadError for a
    file that cannot be read."""

    def __init__(self, decoder: Decoder, label: str = "<image>"):
        self.decoder = decoder
        self.label = label

    def __call__(self, src):
        return self.finish(self.prepare(src))

    def prepare(self, src):
        return self.decoder.resized_pil(self.decoder.load_cpu(src, self.label))

    def finish(self, resized):
        return self.decoder.transforms(resized)


def pixel_groups(jpegs: list[JpegJob], budget: int) -> Iterator[list[JpegJob]]:
    """`jpegs` in order, in groups of at most `budget` pixels (one image alone may exceed it)."""
    group: list[JpegJob] = []
    pixels = 0
    for job in jpegs:
        if group and pixels + job.pixels > budget:
            yield group
            group, pixels = [], 0
        group.append(job)
        pixels += job.pixels
    if group:
        yield group


def nvjpeg_out_of_memory(error: BaseException, need_bytes: int, device: str) -> bool:
    """Whether an nvjpeg failure is GPU memory running out: torchvision reports nvjpeg's
    NVJPEG_STATUS_ALLOCATOR_FAILURE (5) as "Error while decoding JPEG images: 5", and any failure
    with less free memory than the decode needs is taken as one."""
    import re

    import torch

    text = str(error)
    if "out of memory" in text.lower() or re.search(r"JPEG images: 5\b", text):
        return True
    try:
        free, _ = torch.cuda.mem_get_info(device)
    except RuntimeError:
        return False
    return free < need_bytes


def orient_tensor(x, orientation: int):
    """Apply EXIF `orientation` to a (C, H, W) tensor, as PIL's exif_transpose does to an image."""
    if orientation == 1:
        return x
    flip_w = lambda t: t.flip(-1)  # noqa: E731
    flip_h = lambda t: t.flip(-2)  # noqa: E731
    swap = lambda t: t.transpose(-1, -2)  # noqa: E731
    ops: dict[int, Callable[[Any], Any]] = {
        2: flip_w,
        3: lambda t: t.flip(-1, -2),
        4: flip_h,
        5: swap,
        6: lambda t: flip_w(swap(t)),  # 90° clockwise
        7: lambda t: flip_w(flip_h(swap(t))),
        8: lambda t: flip_h(swap(t)),  # 90° counter-clockwise
    }
    return ops[orientation](x).contiguous()


def display_picture(image, display_max: int | None):
    """A uint8 (C, H, W) tensor as an RGB PIL image, first shrunk (antialiased, where it lies) so that
    its long side is at most `display_max`: only what is displayed crosses to the CPU."""
    import torch
    import torch.nn.functional as F
    from PIL import Image

    x = image.expand(3, -1, -1) if image.shape[0] == 1 else image
    h, w = int(x.shape[1]), int(x.shape[2])
    if display_max is not None and max(h, w) > display_max:
        s = display_max / max(h, w)
        size = (max(1, round(h * s)), max(1, round(w * s)))
        x = F.interpolate(x[None].float(), size=size, mode="bilinear", antialias=True, align_corners=False)[0]
        x = x.round().clamp(0, 255).to(torch.uint8)
    return Image.fromarray(x.permute(1, 2, 0).contiguous().cpu().numpy(), "RGB")


def _ends_like_jpeg(data: bytes) -> bool:
    """A JPEG whose end-of-image marker is missing is truncated: PIL (not nvjpeg) must judge it."""
    return b"\xff\xd9" in data[-4096:]


_TINY_JPEG: bytes | None = None


def _tiny_jpeg() -> bytes:
    global _TINY_JPEG
    if _TINY_JPEG is None:
        import io

        from PIL import Image

        buf = io.BytesIO()
        Image.new("RGB", (16, 16), (128, 64, 32)).save(buf, "JPEG")
        _TINY_JPEG = buf.getvalue()
    return _TINY_JPEG

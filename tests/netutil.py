"""Shared test helpers: networks with random weights that still respond to their input, and generated
image files (good and bad).

A freshly initialised GoogLeNet / Inception v3 has batch-norm running stats of 0 and 1, so the
activations drift towards zero (or denormals) layer after layer and every image gets the same top-1:
comparisons of predictions would then be toothless. `calibrated_model` fixes that deterministically
(seeded init, batch-norm statistics measured on varied synthetic images, classifier bias centred) and
`write_weights` saves the result where `--weights FILE` can load it.
"""

from __future__ import annotations

import contextlib
import functools
import io
import os
import resource
import struct
import threading
import zlib
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from explorer.core.model.zoo import get_spec

SEED = 20240611
_MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
_STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)


def synthetic_batch(n: int, size: int, generator: torch.Generator) -> torch.Tensor:
    """n varied images in [0, 1] (noise, smooth noise, gradients, boxes), shape (n, 3, size, size)."""
    g = generator
    out = []
    ramp = torch.linspace(0, 1, size)
    for i in range(n):
        kind = i % 4
        if kind == 0:
            img = torch.rand(3, size, size, generator=g)
        elif kind == 1:
            low = torch.rand(1, 3, 6, 6, generator=g)
            img = torch.nn.functional.interpolate(low, size=(size, size), mode="bicubic", align_corners=False)[0]
        elif kind == 2:
            c = torch.rand(3, 1, 1, generator=g)
            img = c * ramp.view(1, 1, -1) + (1 - c) * ramp.view(1, -1, 1)
        else:
            img = torch.rand(3, 1, 1, generator=g).expand(3, size, size).clone()
            for _ in range(3):
                y0, x0 = torch.randint(0, size // 2, (2,), generator=g).tolist()
                h, w = torch.randint(size // 8, size // 2, (2,), generator=g).tolist()
                img[:, y0 : y0 + h, x0 : x0 + w] = torch.rand(3, 1, 1, generator=g)
        out.append(img.clamp(0, 1))
    return torch.stack(out)


@functools.cache
def _calibrated_state(name: str) -> dict[str, torch.Tensor]:
    spec = get_spec(name)
    # Statistics are measured at the native input size: measured on small inputs they do not carry
    # over (Inception v3's last blocks shrink to 1×1 at 96 px and its logits then explode at 299).
    size = spec.native_size[0]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(SEED)
        model = spec.build()
    g = torch.Generator().manual_seed(SEED)
    bns = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None  # cumulative average over all calibration batches
        bn.train()
    # The model stays in eval mode (no aux heads, no dropout); only its batch norms learn statistics.
    calls: list[tuple[torch.nn.Linear, torch.Tensor]] = []
    with torch.no_grad():
        model((synthetic_batch(6, size, g) - _MEAN) / _STD)
        # The classifier is the last nn.Linear the eval forward calls, whatever it is named
        # (fc, Inception-v4's last_linear, the Inception-ResNets' classif).
        hooks = [m.register_forward_hook(lambda m, inp, out: calls.append((m, inp[0])))
                 for m in model.modules() if isinstance(m, torch.nn.Linear)]
        try:
            model((synthetic_batch(6, size, g) - _MEAN) / _STD)
        finally:
            for h in hooks:
                h.remove()
        for bn in bns:
            bn.eval()
        if not calls:
            raise ValueError(f"{name}: no nn.Linear classifier to calibrate")
        fc = calls[-1][0]
        # Centre the classifier on the mean feature (of the last batch, normalised by statistics
        # close to the final ones) so that logits follow what differs between images rather than a
        # bias shared by all of them.
        feats = torch.cat([x for m, x in calls if m is fc])
        fc.bias.copy_(-(fc.weight @ feats.mean(0)))
        # Spread the logits like a trained network's (std ≈ 3): the top-5 then has clear gaps, so
        # that rounding differences between two exact pipelines cannot reorder it.
        spread = fc(feats).std().item()
        fc.weight.mul_(3.0 / spread)
        fc.bias.mul_(3.0 / spread)
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def calibrated_state_dict(name: str) -> dict[str, torch.Tensor]:
    """The calibrated weights of zoo model `name` (a fresh copy; computed once per process)."""
    return {k: v.clone() for k, v in _calibrated_state(name).items()}


def calibrated_model(name: str) -> torch.nn.Module:
    """Zoo model `name` built as the zoo builds it, with calibrated random weights, in eval mode."""
    model = get_spec(name).build()
    model.load_state_dict(_calibrated_state(name), strict=True)
    return model.eval()


def gradient_x_activation_by_hooks(module: torch.nn.Module, x: torch.Tensor, target: int,
                                   blocks) -> dict[str, float]:
    """The independent reference for attribution shares: Σ |d logit[target] / d output × output| over each
    of `blocks`' outputs, from forward hooks on the plain network (its gradients are zeroed afterwards)."""
    outs = {}

    def keep(name):
        def hook(module, inputs, output):
            output.retain_grad()
            outs[name] = output
        return hook

    hooks = [module.get_submodule(b).register_forward_hook(keep(b)) for b in blocks]
    try:
        module(x)[0, target].backward()
    finally:
        for h in hooks:
            h.remove()
        module.zero_grad()
    return {b: float((o.grad * o).detach().abs().sum()) for b, o in outs.items()}


def write_weights(model_or_state, path: str | Path) -> Path:
    """Save a state dict to `path`: safetensors for *.safetensors, else torch.save (.pth/.pt)."""
    path = Path(path)
    sd = model_or_state.state_dict() if isinstance(model_or_state, torch.nn.Module) else model_or_state
    sd = {k: v.detach().contiguous() for k, v in sd.items()}
    if path.suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file(sd, str(path))
    else:
        torch.save(sd, path)
    return path


# ---------------------------------------------------------------- image corpora

_RNG = np.random.default_rng(7)


def png_header_only(w: int, h: int) -> bytes:
    """A tiny PNG that claims to be w×h pixels: what a decompression bomb looks like from outside."""
    raw = zlib.compress(b"\x00" * 64)

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", raw) + chunk(b"IEND", b"")


def jpeg_bytes(size=(64, 48)) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(_RNG.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(buf, "JPEG", quality=90)
    return buf.getvalue()


def png_bytes(size=(64, 48)) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(_RNG.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(buf, "PNG")
    return buf.getvalue()


def strip_png(w: int, h: int) -> bytes:
    """A black w×h PNG, 1 bit per pixel: a few hundred bytes however long it is."""
    buf = io.BytesIO()
    Image.new("1", (w, h)).save(buf, "PNG", optimize=True)
    return buf.getvalue()


class FifoWatchdog:
    """Unblocks a reader stuck opening `fifo` (opening it for writing, then closing it) if one is still
    stuck after `grace` seconds: a regression then gets end-of-file instead of hanging the test."""

    def __init__(self, fifo: Path, grace: float = 5.0):
        self.fifo, self.grace, self.fired = fifo, grace, False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        if self._stop.wait(self.grace):
            return
        while not self._stop.is_set():
            try:  # succeeds only while a reader has it open (ENXIO otherwise)
                os.close(os.open(self.fifo, os.O_WRONLY | os.O_NONBLOCK))
                self.fired = True
            except OSError:
                pass
            self._stop.wait(0.05)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def bad_corpus(folder: Path) -> dict[str, tuple[Path, str]]:
    """Every kind of bad file, each with a word its error message must contain."""
    jpeg, png = jpeg_bytes(), png_bytes()
    # Damage that a decoder can detect: a JPEG Huffman table of garbage, a PNG zlib stream with a
    # broken header. (Damage inside JPEG scan data cannot be detected: libjpeg recovers from it, as
    # every viewer does, and the picture shows garbage.)
    bad_jpeg = bytearray(jpeg)
    dht = bad_jpeg.index(b"\xff\xc4")
    bad_jpeg[dht + 5 : dht + 25] = b"\xff" * 20
    bad_png = bytearray(png)
    idat = bad_png.index(b"IDAT")
    bad_png[idat + 4 : idat + 6] = b"\x00\x00"
    cases = {
        "empty.jpg": (b"", "empty"),
        "truncated.jpg": (jpeg[: len(jpeg) // 2], "truncated"),
        "truncated.png": (png[: len(png) // 2], "truncated"),
        "header_only.jpg": (jpeg[:20], "JPEG"),
        "text.jpg": (b"this is not a picture, just some words\n" * 20, "not an image"),
        "doc.png": (b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<<>>\nendobj\n", "PDF"),
        "bomb.png": (png_header_only(30000, 30000), "decompression bomb"),
        "corrupt.jpg": (bytes(bad_jpeg), "corrupt"),
        "corrupt.png": (bytes(bad_png), "corrupt"),
    }
    out = {}
    for name, (data, word) in cases.items():
        p = folder / name
        p.write_bytes(data)
        out[name] = (p, word)
    out["missing.jpg"] = (folder / "missing.jpg", "no such file")
    d = folder / "folder.jpg"
    d.mkdir()
    out["folder.jpg"] = (d, "directory")
    return out


#: A model file whose `build()` returns a network that branches on a tensor's value in its forward:
#: torch.fx cannot trace it, so the explorer falls back to the module tree.
UNTRACEABLE_SOURCE = '''
import torch, torch.nn as nn

class Untraceable(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, stride=2)
        self.body = nn.Conv2d(8, 16, 3)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(16, 5)

    def forward(self, x):
        x = self.stem(x)
        if x.abs().sum() >= 0:  # always true, but data-dependent
            x = self.body(x)
        return self.fc(torch.flatten(self.pool(x), 1))

def build():
    return Untraceable()
'''


def untraceable_model() -> torch.nn.Module:
    """A fresh instance of the network in UNTRACEABLE_SOURCE."""
    namespace: dict = {}
    exec(compile(UNTRACEABLE_SOURCE, "untraceable.py", "exec"), namespace)
    return namespace["build"]()


@contextlib.contextmanager
def disk_full_after(nbytes: int):
    """Any write past `nbytes` of a file fails with EFBIG, as on a full disk, until the block ends."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (nbytes, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))

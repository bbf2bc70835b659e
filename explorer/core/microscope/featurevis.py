"""Feature visualisation: an image optimised to excite one channel of a block, a branch or a node.

The method is Olah et al., "Feature Visualization" (Distill, 2017), as Lucid/Lucent implement it: the
image is parameterised by its Fourier spectrum scaled by 1/frequency (decorrelated in space) and by a
fixed colour-decorrelation matrix, squashed into [0, 1] by a sigmoid; each step jitters, scales and
rotates it before the forward, and Adam climbs the objective. Many channels run as one batch: image i
of the batch serves channel i, its objective reads only its own batch element, so the gradients do
not mix. The forward stops at the target probe (the rest of the network is never run).

Objectives: "channel" (mean activation of the channel), "neuron" (the channel at the centre of its
map), "negative" (minus the channel mean: what the channel responds to least).

Batch-normalised Inception models (Inception v2/v3/v4, GoogLeNet as torchvision trains it) give
noisier, less legible images than the original TF GoogLeNet without batch norm; this is a known open
problem (tensorflow/lucid#61), not a bug of this module.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from explorer.core.cancel import CancelToken, ProgressCallback
from explorer.core.text import branch_number

if TYPE_CHECKING:
    import numpy as np
    import torch

OBJECTIVES = ("channel", "neuron", "negative")
DEFAULT_STEPS = 256
DEFAULT_SIZE = 128
#: Channels optimised together (one image each); memory grows linearly with it.
DEFAULT_BATCH = 16
#: Bumped when the optimisation changes, so that cached images made by an older one are not reused.
METHOD_VERSION = 1
BN_NOTE = ("batch-normalised Inception models give noisier feature visualisations than the original "
           "GoogLeNet without batch norm (a known open problem, tensorflow/lucid#61)")

# Lucid's colour correlation of ImageNet, square root of its covariance (from its SVD), normalised so
# that its largest column has norm 1.
_COLOR_SQRT = ((0.26, 0.09, 0.02), (0.27, 0.00, -0.05), (0.27, -0.09, 0.03))


def cache_dir() -> Path:
    """Where results of the engine persist: $INCEPTION_EXPLORER_CACHE, else ~/.cache/inception-explorer."""
    env = os.environ.get("INCEPTION_EXPLORER_CACHE")
    base = Path(env) if env else Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "inception-explorer"
    return base


def weights_digest(module) -> str:
    """A short hash of a network's parameters and buffers (names, shapes, values): the same weights from
    any source (a file, the hub cache, seeded random) give the same key."""
    import torch

    h = hashlib.blake2b(digest_size=12)
    for name, t in module.state_dict().items():
        if not isinstance(t, torch.Tensor):
            continue
        t = t.detach()
        if t.device.type != "cpu":
            t = t.cpu()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)};".encode())
        h.update(t.contiguous().view(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def is_batch_normalised(module) -> bool:
    """Whether the network has batch-norm layers (their visualisations are poorer: lucid#61)."""
    import torch.nn as nn

    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in module.modules())


@dataclass(frozen=True)
class Target:
    """What to visualise: a node, a branch of it (0-based; None: the node's output) and an objective."""

    node: str
    branch: int | None = None
    objective: str = "channel"

    def file_stem(self, channel: int) -> str:
        """`inception4a-2-ch003`: the node, the 1-based branch as Details shows it, the channel."""
        node = self.node.replace(".", "_").replace("/", "_")
        part = f"{node}-{branch_number(self.branch)}" if self.branch is not None else node
        return f"{part}-ch{channel:03d}" + ("" if self.objective == "channel" else f"-{self.objective}")


@dataclass
class Visualisation:
    """One optimised image: (size, size, 3) uint8 RGB and the objective it reaches (no transforms)."""

    channel: int
    image: np.ndarray
    objective: float
    cached: bool = False


# -- parameterisation and transforms ---------------------------------------------------------------


def _freqs(h: int, w: int):
    import torch

    fy = torch.fft.fftfreq(h).view(-1, 1)
    fx = torch.fft.rfftfreq(w).view(1, -1)
    return torch.sqrt(fy * fy + fx * fx)


class FourierImage:
    """A batch of images parameterised by their spectra (Lucid's fft_image + to_valid_rgb)."""

    def __init__(self, batch: int, size: int, generator, decay: float = 1.0, sd: float = 0.01):
        import torch

        self.size = size
        f = _freqs(size, size)
        self.scale = (1.0 / torch.clamp(f, min=1.0 / size) ** decay) * size  # sqrt(h*w)
        shape = (batch, 3) + tuple(f.shape) + (2,)
        self.spectrum = (torch.randn(shape, generator=generator) * sd).requires_grad_(True)
        c = torch.tensor(_COLOR_SQRT)
        self.color = c / c.norm(dim=0).max()

    def __call__(self):
        import torch

        spec = torch.view_as_complex(self.spectrum) * self.scale
        img = torch.fft.irfft2(spec, s=(self.size, self.size), norm="ortho") / 4.0
        # Decorrelated colour: each pixel's 3 values are mixed by the colour matrix.
        img = torch.einsum("bchw,dc->bdhw", img, self.color)
        return torch.sigmoid(img)


PAD = 12


def _transform(img, generator):
    """Lucid's standard robustness transforms: pad 12 (grey), jitter 8, scale 0.9–1.1 and rotate ±10°
    (drawn per image), jitter 4. Returns the image and the jitters' total shift (dy, dx)."""
    import torch
    import torch.nn.functional as F

    b = img.shape[0]
    img = F.pad(img, (PAD, PAD, PAD, PAD), value=0.5)
    img, (y1, x1) = _jitter(img, 8, generator)
    scales = torch.tensor([1 + (i - 5) / 50 for i in range(11)])
    angles = torch.tensor(list(range(-10, 11)) + 5 * [0], dtype=torch.float32)
    s = scales[torch.randint(len(scales), (b,), generator=generator)]
    a = angles[torch.randint(len(angles), (b,), generator=generator)] * math.pi / 180
    cos, sin = torch.cos(a) / s, torch.sin(a) / s
    theta = torch.stack([torch.stack([cos, -sin, torch.zeros(b)], 1), torch.stack([sin, cos, torch.zeros(b)], 1)], 1)
    grid = F.affine_grid(theta, list(img.shape), align_corners=False)
    img = F.grid_sample(img, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
    img, (y2, x2) = _jitter(img, 4, generator)
    return img, (y1 + y2, x1 + x2)


def _jitter(img, d: int, generator):
    import torch

    dy, dx = torch.randint(d, (2,), generator=generator).tolist()
    h, w = img.shape[2] - d, img.shape[3] - d
    return img[:, :, dy : dy + h, dx : dx + w], (dy, dx)


# -- optimisation -----------------------------------------------------------------------------------


class _Reached(Exception):
    """Raised by the probe hook to stop the forward once the target tensor is computed."""


class TargetReader:
    """Runs a network up to one probed tensor (a CaptureModel's probe) and returns that tensor."""

    def __init__(self, cm, node: str, branch: int | None):
        self.cm = cm
        self.layer = cm.layer(node, branch)

    def __call__(self, x):
        got = []

        def hook(module, inputs, output):
            got.append(output)
            raise _Reached

        h = self.layer.register_forward_hook(hook)
        try:
            self.cm(x)
        except _Reached:
            pass
        finally:
            h.remove()
        if not got:
            raise RuntimeError("the forward did not reach the target layer")
        return got[0]


def objective_values(act, channels, objective: str, centre: tuple[int, int] | None = None):
    """Per batch element i: the objective of channel `channels[i]` of activation `act` (B, C[, H, W]);
    "neuron" reads map position `centre` (default: the map's centre)."""
    import torch

    idx = torch.arange(act.shape[0])
    ch = torch.as_tensor(channels)
    sel = act[idx, ch]  # (B,) or (B, H, W)
    if sel.dim() == 1:
        value = sel
    elif objective == "neuron":
        cy, cx = centre if centre is not None else (sel.shape[1] // 2, sel.shape[2] // 2)
        value = sel[:, min(max(cy, 0), sel.shape[1] - 1), min(max(cx, 0), sel.shape[2] - 1)]
    else:
        value = sel.flatten(1).mean(1)
    return -value if objective == "negative" else value


def visualize(cm, target: Target, channels, *, steps: int = DEFAULT_STEPS, size: int = DEFAULT_SIZE,
              mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225), batch: int = DEFAULT_BATCH,
              lr: float = 0.05, seed: int = 0, progress: ProgressCallback | None = None,
              cancel: CancelToken | None = None) -> list[Visualisation]:
    """Optimise one image per channel of `target` (through CaptureModel `cm`, on the CPU or its device)
    for `steps` Adam steps at `size`×`size`; `batch` channels at a time. Deterministic for a seed."""
    import numpy as np
    import torch

    if target.objective not in OBJECTIVES:
        raise ValueError(f"unknown objective {target.objective!r}; one of {', '.join(OBJECTIVES)}")
    channels = [int(c) for c in channels]
    reader = TargetReader(cm, target.node, target.branch)
    device = next((p.device for p in cm.parameters()), torch.device("cpu"))
    m = torch.tensor(mean, device=device).view(1, 3, 1, 1)
    s = torch.tensor(std, device=device).view(1, 3, 1, 1)
    out: list[Visualisation] = []
    groups = [channels[i : i + batch] for i in range(0, len(channels), batch)]
    total = steps * len(groups)
    done = 0
    cm.eval()  # its modules are shared with the loaded network, which always runs in eval mode
    with torch.no_grad():  # the map's size on the untransformed image: "neuron" means its centre unit
        clean = reader(torch.zeros(1, 3, size, size, device=device))
    clean_centre = (clean.shape[2] // 2, clean.shape[3] // 2) if clean.dim() == 4 else None
    for group in groups:
        g = torch.Generator().manual_seed(seed)
        param = FourierImage(len(group), size, g)
        opt = torch.optim.Adam([param.spectrum], lr=lr)
        for step in range(steps):
            if cancel is not None:
                cancel.raise_if_cancelled()
            opt.zero_grad(set_to_none=True)
            x, (dy, dx) = _transform(param(), g)
            act = reader((x.to(device) - m) / s)
            centre = None
            if clean_centre is not None and act.dim() == 4:
                # The unit over the image's centre, which the padding and jitters moved by PAD - shift
                # pixels (stride estimated from the two map sizes).
                stride = size / clean.shape[2]
                centre = (clean_centre[0] + round((PAD - dy) / stride), clean_centre[1] + round((PAD - dx) / stride))
            loss = -objective_values(act, group, target.objective, centre).sum()
            if target.objective == "neuron" and step < steps // 4:
                # Warm start: a unit whose ReLU is shut on the initial image has no gradient (Lucid
                # redirects ReLU gradients early on instead); the channel's mean lifts it first.
                loss = loss - objective_values(act, group, "channel").sum()
            # Gradients for the image only: the network's weight gradients are never computed.
            loss.backward(inputs=[param.spectrum])
            opt.step()
            done += 1
            if progress is not None:
                progress(done, total)
        with torch.no_grad():
            img = param()
            values = objective_values(reader(((img.to(device)) - m) / s), group, target.objective)
        pics = (img.permute(0, 2, 3, 1).clamp(0, 1) * 255).round().to(torch.uint8).numpy()
        for c, pic, v in zip(group, pics, values.tolist()):
            out.append(Visualisation(c, np.ascontiguousarray(pic), float(v)))
    return out


# -- cache ---------------------------------------------------------------------------------------------


def cache_key(model: str, weights: str, target: Target, channel: int, steps: int, size: int, seed: int = 0) -> str:
    """The cache file stem of one visualisation."""
    text = json.dumps([METHOD_VERSION, model, weights, target.node, target.branch, target.objective, channel,
                       steps, size, seed])
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def visualize_cached(cm, model: str, weights: str, target: Target, channels, *, steps: int = DEFAULT_STEPS,
                     size: int = DEFAULT_SIZE, seed: int = 0, directory: Path | None = None,
                     note: Callable[[str], None] | None = None, **kw) -> list[Visualisation]:
    """`visualize`, with each channel's image kept on disk (a PNG carrying its objective value) per
    model reference, weights hash, target, channel, steps, size and seed; only missing ones are run.
    A cache that cannot be written (a full disk, its folder a file) is only a cache: the results are
    returned all the same, and `note` is told why once per call."""
    import io

    import numpy as np
    from PIL import Image
    from PIL.PngImagePlugin import PngInfo

    from explorer.core.outputs import OutputError, make_folder, write_file

    folder = (directory or cache_dir()) / "featurevis"
    found: dict[int, Visualisation] = {}
    missing = []
    for c in dict.fromkeys(int(c) for c in channels):
        path = folder / (cache_key(model, weights, target, c, steps, size, seed) + ".png")
        try:
            with Image.open(path) as im:
                found[c] = Visualisation(c, np.asarray(im.convert("RGB")), float(im.text["objective"]), cached=True)
        except (OSError, KeyError, ValueError):
            missing.append(c)
    if missing:
        problem = None
        try:
            make_folder(folder)
        except OutputError as e:
            problem = e
        for v in visualize(cm, target, missing, steps=steps, size=size, seed=seed, **kw):
            found[v.channel] = v
            if problem is not None:
                continue
            info = PngInfo()
            info.add_text("objective", repr(v.objective))
            png = io.BytesIO()
            Image.fromarray(v.image).save(png, format="PNG", pnginfo=info)
            try:  # whole or not at all: a killed run leaves no half-written image behind
                write_file(folder / (cache_key(model, weights, target, v.channel, steps, size, seed) + ".png"),
                           png.getvalue())
            except OutputError as e:
                problem = e
        if problem is not None and note is not None:
            note(f"the feature-visualisation cache is not kept: {problem}")
    return [found[int(c)] for c in channels]


#: The most channels `parse_channels` accepts before it knows the layer (no CNN layer has more).
MAX_CHANNELS = 1 << 16


def _channel_number(digits: str) -> int:
    """An ASCII number, capped (a 5,000-digit number is simply too big, not an int() error)."""
    digits = digits.lstrip("0") or "0"
    return int(digits) if len(digits) <= 12 else 10**12


def parse_channels(text: str, count: int | None = None) -> list[int]:
    """`0-15`, `3`, `0,4,8-11` as a list of channel numbers; ValueError naming what is wrong.

    Ranges are checked against `count` (else MAX_CHANNELS) before they are expanded, so `0-99999999999`
    is refused at once instead of filling the memory; digits are ASCII only ('²'.isdigit() is True)."""
    limit = count if count is not None else MAX_CHANNELS
    out: list[int] = []
    for part in text.split(","):
        part = part.strip()
        lo, sep, hi = part.partition("-")
        if not (lo.isascii() and lo.isdigit()) or (sep and not (hi.isascii() and hi.isdigit())):
            raise ValueError(f"channels {text!r}: give numbers and ranges like 0-15 or 0,4,8-11")
        a = _channel_number(lo)
        b = _channel_number(hi) if sep else a
        if b < a:
            raise ValueError(f"channels {text!r}: range {part} runs backwards")
        if b >= limit:
            raise ValueError(f"channel {max(a, limit)} does not exist: this layer has {count} channels (0 to "
                             f"{count - 1})" if count is not None else
                             f"channels {text!r}: {part} goes beyond any layer (at most {limit} channels)")
        out.extend(range(a, b + 1))
    return list(dict.fromkeys(out))


def target_channels(cm, target: Target, size: int) -> int:
    """How many channels the target has at input `size` (one no-grad forward up to it); RuntimeError
    from the network when that size is too small for it."""
    import torch

    with torch.no_grad():
        device = next((p.device for p in cm.parameters()), torch.device("cpu"))
        act = TargetReader(cm, target.node, target.branch)(torch.zeros(1, 3, size, size, device=device))
    return int(act.shape[1])

"""The GPU path's network input against torchvision's PIL reference, by image size and content, and
what its JPEG decode costs beside PIL's.

    python bench/bench_gpu_input.py [--repeat N] [--quick]   (--quick: the CPU columns only, small sizes)

For each JPEG (photo-like at 120×90 … 4000×3000, chroma subsampled 4:2:0 as cameras write them and
4:4:4, the three sample photos, pure noise and sharp colour blocks small and large), the reference is `weights.transforms()` on the
PIL image on the CPU. Printed: the mean and largest difference, in grey levels, of
- tensor: the same transform on PIL's decoded pixels as a uint8 tensor on the CPU (resize rounding only),
- pil→gpu: PIL's pixels moved to the GPU and transformed there,
- gpu path: what `Classifier(..., "cuda").device_input` gives (the path the app and `classify` run),
- nvjpeg: torchvision's nvjpeg decode, then the transform on the GPU,
and the decode+preprocess time of the GPU path and of PIL's decode with the GPU transform (medians).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_classify import get_loaded, make_jpeg  # noqa: E402

SIZES = [(120, 90), (320, 240), (640, 480), (1024, 768), (1600, 1200), (4000, 3000)]
#: Grey levels per unit of the normalised input (the mean of ImageNet's channel deviations × 255).
LEVELS = 0.226 * 255


def images(folder: Path, sizes) -> list[Path]:
    out = []
    for w, h in sizes:
        p = make_jpeg(folder / f"photo_{w}x{h}.jpg", (w, h), seed=w)
        out.append(p)
        q = folder / f"photo_{w}x{h}_444.jpg"
        Image.open(p).save(q, "JPEG", quality=90, subsampling=0)
        out.append(q)
    out += sorted((ROOT / "resources" / "samples").glob("*.jpg"))
    rng = np.random.default_rng(0)
    for w, h in [(300, 200), (1600, 1200)] + ([] if len(sizes) < 3 else [(4000, 3000)]):
        noise = folder / f"noise_{w}x{h}.jpg"
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(noise, quality=90)
        out.append(noise)
    for w, h in [(512, 384), (2000, 1500)]:  # saturated colour blocks: sharp chroma edges
        blocks = folder / f"blocks_{w}x{h}.jpg"
        low = rng.integers(0, 256, (h // 25, w // 25, 3), dtype=np.uint8)
        Image.fromarray(low).resize((w, h), Image.NEAREST).save(blocks, quality=90)
        out.append(blocks)
    return out


def levels(a: torch.Tensor, ref: torch.Tensor) -> tuple[float, float]:
    d = (a.float().cpu() - ref).abs() * LEVELS
    return float(d.mean()), float(d.max())


def median_ms(fn, repeat: int) -> float:
    fn()
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1e3


def content(kind: str, w: int, h: int, rng) -> Image.Image:
    if kind == "noise":
        return Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
    if kind == "blocks":  # saturated colour blocks of 25 px: sharp chroma edges
        return Image.fromarray(rng.integers(0, 256, (h // 25 + 1, w // 25 + 1, 3), dtype=np.uint8)).resize(
            (w, h), Image.NEAREST)
    return Image.open(make_jpeg(Path(tempfile.mkdtemp()) / "p.jpg", (w, h), seed=w)).convert("RGB")


def sweep() -> None:
    """nvjpeg against PIL by the short side's ratio to each model's resize size, for the worst contents."""
    from torchvision.io import ImageReadMode, decode_jpeg

    from explorer.core.model.zoo import get_spec

    tfs = {name: get_spec(name).weights_enum().transforms() for name in ("googlenet", "inception_v3")}
    rng = np.random.default_rng(1)
    print("nvjpeg (4:2:0) against PIL, largest difference in grey levels, by short side / resize size")
    with tempfile.TemporaryDirectory() as tmp:
        for kind in ("photo", "noise", "blocks"):
            for short in (1024, 1536, 2048, 2560, 3072, 3456, 4096):
                w, h = short * 4 // 3, short
                p = Path(tmp) / f"{kind}.jpg"
                content(kind, w, h, rng).save(p, quality=90)
                pil = Image.open(p).convert("RGB")
                data = torch.frombuffer(bytearray(p.read_bytes()), dtype=torch.uint8)
                nv = decode_jpeg(data, mode=ImageReadMode.RGB, device="cuda")
                cells = []
                for name, tf in tfs.items():
                    mean, mx = levels(tf(nv), tf(pil))
                    cells.append(f"{name} ×{short / tf.resize_size[0]:4.1f}: {mean:5.2f} /{mx:5.1f}")
                print(f"{kind:7s} {w}×{h}   " + "   ".join(cells))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=10)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--sweep", action="store_true", help="nvjpeg against PIL by size, worst contents (CUDA)")
    args = ap.parse_args()
    if args.sweep:
        return sweep()
    from torchvision.io import ImageReadMode, decode_jpeg
    from torchvision.transforms.functional import pil_to_tensor

    from explorer.core.classify.inference import Classifier

    cuda = torch.cuda.is_available() and not args.quick
    loaded, _ = get_loaded("googlenet")
    tf = loaded.transforms()
    clf = Classifier(loaded, "cuda") if cuda else None
    print(f"torch {torch.__version__}, torchvision transform {type(tf).__name__}, "
          f"GPU {torch.cuda.get_device_name() if cuda else 'none (CPU columns only)'}")
    print(f"{'image':24s} {'tensor':>13s} {'pil→gpu':>13s} {'gpu path':>13s} {'nvjpeg':>13s}   "
          f"{'gpu path ms':>11s} {'PIL→gpu ms':>10s}   (grey levels: mean / max)")
    with tempfile.TemporaryDirectory() as tmp:
        for p in images(Path(tmp), SIZES[:2] if args.quick else SIZES):
            pil = Image.open(p).convert("RGB")
            ref = tf(pil)
            cols = [levels(tf(pil_to_tensor(pil)), ref)]
            times = ""
            if cuda:
                data = torch.frombuffer(bytearray(p.read_bytes()), dtype=torch.uint8)
                cols.append(levels(tf(pil_to_tensor(pil).cuda()), ref))
                cols.append(levels(clf.device_input(p), ref))
                cols.append(levels(tf(decode_jpeg(data, mode=ImageReadMode.RGB, device="cuda")), ref))
                gpu_ms = median_ms(lambda: clf.device_input(p), args.repeat)
                pil_ms = median_ms(lambda: tf(pil_to_tensor(Image.open(p).convert("RGB")).cuda()), args.repeat)
                times = f"{gpu_ms:11.2f} {pil_ms:10.2f}"
            text = " ".join(f"{m:6.2f} /{x:5.1f}" for m, x in cols)
            print(f"{p.name:24s} {text}   {times}")


if __name__ == "__main__":
    main()

"""Training the demo network on drawn shapes, parts of them blurred (augment.py): seeded and deterministic on
the CPU, a few minutes on two cores.

Every step draws a fresh batch (images `step × batch …` of the training seed's set), so the network never
sees an image twice and there is nothing to overfit. The same seed, step count, batch and thread count
give the same weights, bit for bit: the initialisation and dropout come from a seeded torch generator,
torch runs its deterministic algorithms, and the number of threads (which fixes how the convolutions split
their sums) is set for the run. The accuracy is measured at the end on images drawn with `EVAL_SEED`,
which training never uses. numpy and torch are imported when a run starts: the command line's parser reads
`TrainingPlan`'s defaults.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from explorer.core.cancel import CancelToken
from explorer.core.demo.task import MEAN, SHAPE_CLASSES, STD

if TYPE_CHECKING:
    import numpy as np

#: The seed of the images the accuracy is measured on: training refuses it.
EVAL_SEED = 24_000_000
#: The builder of the demo network (in `inception_models`).
BUILDER = ("inception_models.shapes_inception", "shapes_inception")
#: The share of the training images whose background is partly blurred, the shipped weights' setting (augment.py).
BACKGROUND_BLUR = 0.9
#: The share of the training images whose target is blurred away (augment.py), the shipped weights' setting.
OBJECT_BLUR = 0.15


@dataclass(frozen=True)
class TrainingPlan:
    """What a training run does; the defaults are those of the shipped weights."""

    #: 500 steps of 64 reach 99.9 % (1,199 of 1,200 fresh images); the loss is near zero from step 350.
    steps: int = 500
    batch: int = 64
    seed: int = 0
    lr: float = 3e-3
    weight_decay: float = 1e-4
    #: Threads torch computes with: part of what makes the run reproducible. One, as two are 1.5× faster on an
    #: idle two-core machine (170 against 270 ms a step) but five to twenty times slower on a busy one.
    threads: int = 1
    eval_images: int = 1200
    #: The share of the images keeping their target whose background is partly blurred (augment.py: so that the
    #: faithfulness curves' blurred image is something the network has seen). 0 trains on the drawn images alone.
    #: Without the targets blurred, 0.9 and 0.5 gave Grad-CAM's insertion above the random orders' mean on 87 %
    #: and 77 % of seed 4242's 30 images, none 73 %; with them (object_blur 0.15), 0.9 gave 93 %.
    background_blur: float = BACKGROUND_BLUR
    #: The share of each batch whose target is blurred away, taught as no evidence: every class equally likely.
    object_blur: float = OBJECT_BLUR

    def check(self) -> None:
        """ValueError naming the first setting that cannot be used."""
        if self.steps < 1 or self.batch < 2 or self.threads < 1 or self.eval_images < 0:
            raise ValueError("steps, threads and eval images must be positive and the batch at least 2")
        if not (0 <= self.background_blur <= 1 and 0 <= self.object_blur <= 1):
            raise ValueError("the shares of blurred backgrounds and targets must be between 0 and 1")
        if self.seed == EVAL_SEED:
            raise ValueError(f"seed {EVAL_SEED} draws the images the accuracy is measured on; choose another")
        if not 0 <= self.seed < 2 ** 63:
            raise ValueError("the seed must be between 0 and 2⁶³ − 1")


@dataclass(frozen=True)
class TrainingProgress:
    """One step done: what the command prints."""

    step: int
    steps: int
    loss: float
    seconds: float


@dataclass(frozen=True)
class TrainingResult:
    """The trained weights and what was measured."""

    state_dict: dict[str, Any]
    plan: TrainingPlan
    #: Fraction of `plan.eval_images` images of EVAL_SEED classified correctly (None: none measured).
    accuracy: float | None
    seconds: float

    def metadata(self) -> dict[str, str]:
        """What the weights file records about itself (safetensors metadata: strings). Nothing that changes
        from run to run (no time taken): the same settings make the same file, byte for byte."""
        import torch

        p = self.plan
        meta = {"model": "shapes_inception", "classes": ",".join(SHAPE_CLASSES), "seed": str(p.seed),
                "steps": str(p.steps), "batch": str(p.batch), "threads": str(p.threads),
                "background_blur": f"{p.background_blur:g}", "object_blur": f"{p.object_blur:g}",
                "torch": torch.__version__}
        if self.accuracy is not None:
            meta |= {"accuracy": f"{self.accuracy:.4f}", "eval_images": str(p.eval_images),
                     "eval_seed": str(EVAL_SEED)}
        return meta


def network_input(images: np.ndarray):
    """uint8 images (N, H, W, 3) as the network's normalised float input (N, 3, H, W): the zoo's
    preprocessing of the demo model (to tensor, then the mean and deviation of `task`)."""
    import torch

    x = torch.from_numpy(images).permute(0, 3, 1, 2).float().div_(255.0)
    mean = torch.tensor(MEAN).view(1, 3, 1, 1)
    std = torch.tensor(STD).view(1, 3, 1, 1)
    return (x - mean) / std


def build_network():
    """The demo network with the initialisation of torch's current random state."""
    import importlib

    return getattr(importlib.import_module(BUILDER[0]), BUILDER[1])()


@contextlib.contextmanager
def reproducible(threads: int) -> Iterator[None]:
    """torch's deterministic algorithms on `threads` threads for the block; the previous settings after it."""
    import torch

    before = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True)
    try:
        yield
    finally:
        torch.set_num_threads(before[0])
        torch.use_deterministic_algorithms(before[1])


def train(plan: TrainingPlan, *, on_step: Callable[[TrainingProgress], None] | None = None,
          report_every: int = 25, cancel: CancelToken | None = None) -> TrainingResult:
    """Train the demo network as `plan` says, then measure its accuracy; `on_step` hears every
    `report_every` steps and the last one. Raises Cancelled when `cancel` is set (checked every step)."""
    import torch

    plan.check()
    start = time.perf_counter()
    with reproducible(plan.threads), torch.random.fork_rng(devices=[]):
        torch.manual_seed(plan.seed)
        model = build_network().train()
        optimiser = torch.optim.AdamW(model.parameters(), lr=plan.lr, weight_decay=plan.weight_decay)
        schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, max_lr=plan.lr, total_steps=plan.steps,
                                                       pct_start=0.15)
        for step in range(plan.steps):
            if cancel is not None:
                cancel.raise_if_cancelled()
            x, labels = training_batch(plan, step)
            loss = torch.nn.functional.cross_entropy(model(x), labels)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            schedule.step()
            done = step + 1
            if on_step is not None and (done % report_every == 0 or done == plan.steps):
                on_step(TrainingProgress(done, plan.steps, float(loss.detach()), time.perf_counter() - start))
        model.eval()
        accuracy = evaluate(model, plan.eval_images, EVAL_SEED) if plan.eval_images else None
    state = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}
    return TrainingResult(state, plan, accuracy, time.perf_counter() - start)


def training_batch(plan: TrainingPlan, step: int):
    """(network inputs, class probabilities to learn) of training step `step`: the batch's fresh drawn images,
    parts of them blurred as `plan.background_blur` and `plan.object_blur` say (the random choices seeded by the
    seed and the step); an image whose target was blurred away is to give every class alike."""
    import numpy as np
    import torch

    from explorer.core.demo.augment import blur_images
    from explorer.core.demo.drawing import draw_images

    drawn = draw_images(plan.batch, plan.seed, start=step * plan.batch)
    x = network_input(np.stack([d.image for d in drawn]))
    rng = np.random.default_rng([plan.seed, step, 1])
    x, lost = blur_images(x, np.stack([d.mask for d in drawn]), rng, plan.background_blur, plan.object_blur)
    targets = torch.nn.functional.one_hot(torch.tensor([d.label for d in drawn]), len(SHAPE_CLASSES)).float()
    targets[torch.from_numpy(lost)] = 1 / len(SHAPE_CLASSES)
    return x, targets


def predict(model, images: np.ndarray, batch: int = 200) -> np.ndarray:
    """The class index the model (in eval mode) gives each uint8 image (N, H, W, 3)."""
    import numpy as np
    import torch

    out = []
    with torch.no_grad():
        for i in range(0, len(images), batch):
            out.append(model(network_input(images[i:i + batch])).argmax(1).numpy())
    return np.concatenate(out) if out else np.zeros(0, dtype=np.int64)


def evaluate(model, count: int, seed: int) -> float:
    """Fraction of `count` images drawn with `seed` that `model` classifies correctly."""
    from explorer.core.demo.drawing import draw_batch

    images, labels = draw_batch(count, seed)
    return float((predict(model, images) == labels).mean())


def weights_bytes(result: TrainingResult) -> bytes:
    """The trained weights as a safetensors file, its metadata saying how they were made and measured.

    The header is rewritten with its keys sorted: safetensors lists them from a hash map whose order changes
    from process to process, and the same weights should make the same file, byte for byte."""
    import json
    import struct

    from safetensors.torch import save

    raw = save(result.state_dict, metadata=result.metadata())
    (length,) = struct.unpack("<Q", raw[:8])
    header = json.dumps(json.loads(raw[8:8 + length]), sort_keys=True, separators=(",", ":")).encode("utf-8")
    header += b" " * (-len(header) % 8)  # the tensors' data stays 8-byte aligned, as safetensors writes it
    return struct.pack("<Q", len(header)) + header + raw[8 + length:]


__all__ = ["EVAL_SEED", "TrainingPlan", "TrainingProgress", "TrainingResult", "evaluate", "network_input",
           "predict", "train", "training_batch", "weights_bytes"]

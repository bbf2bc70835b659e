"""Load a model (the zoo's, or one opened by `anycnn`) with its weights, preprocessing and category names."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from explorer.core.cancel import CancelToken, ProgressCallback
from explorer.core.model.weights import (WeightsState, load_shipped, load_weights_file, resolve_hub,
                                         resolve_pretrained)
from explorer.core.model.zoo import OPEN_WEIGHTS_HINT, ModelSpec, get_spec, imagenet_categories, imagenet_preprocessing


@dataclass
class LoadedModel:
    """A ready-to-run network (eval mode) and everything needed to interpret its output."""

    spec: ModelSpec
    module: Any  # torch.nn.Module
    weights: WeightsState
    categories: list[str]
    #: Preprocessing for a model whose spec has none of its own (an opened model without weights enum).
    preprocess: Any = None

    @property
    def name(self) -> str:
        return self.spec.name

    def transforms(self):
        return self.preprocess if self.preprocess is not None else self.spec.transforms()


def has_learned_weights(model: LoadedModel | WeightsState) -> bool:
    """Whether the network's weights were learned (published, shipped with the explorer, or read from a file the
    person chose), not random: what decides whether a map, a curve or a sanity check can say anything about what
    the network learned (explorer.core.model.weights.UNLEARNED_CAVEAT says so where they cannot)."""
    state = model.weights if isinstance(model, LoadedModel) else model
    return not state.is_random


def load_model(
    name: str | ModelSpec,
    *,
    weights: str | os.PathLike = "auto",
    allow_download: bool = True,
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
    timeout: float = 15.0,
    outputs: int | None = None,
) -> LoadedModel:
    """Build `name` (a zoo name, or a spec from `anycnn.open_model`) on the CPU and give it weights.

    weights: "auto" (the published weights: torch hub's or the Hugging Face Hub's cache, then a
    download; the demo model's from the package; random with the reason when both fail or none are published), "none"
    (random on purpose), or a path to a .pth/.pt/.safetensors file (WeightsError if it does not fit).
    outputs: the number of classes an opened model predicts, where known (1000: ImageNet's names).
    """
    from explorer.core.model.anycnn import ANY_CNN, OWN_WEIGHTS

    spec = name if isinstance(name, ModelSpec) else get_spec(name)
    module = spec.build()
    if OWN_WEIGHTS in spec.notes and isinstance(weights, str) and weights in ("auto", "none"):
        # TorchScript / torch.export: the weights came with the file; there is nothing else to load.
        state = WeightsState("file", f"the file's own ({spec.title})")
    elif isinstance(weights, str) and weights == "none":
        state = WeightsState("random", "none", "no weights requested")
    elif isinstance(weights, str) and weights == "auto":
        state = resolve_published(module, spec, allow_download=allow_download, progress=progress, cancel=cancel,
                                  timeout=timeout)
    else:
        state = load_weights_file(module, weights)
    module.eval()
    categories, preprocess = spec.categories(), None
    if spec.family == ANY_CNN and spec.weights is None:
        # No weights enum to say how it was trained: its weights' data config (timm), else ImageNet's
        # conventions at its native size.
        own = spec.preprocessing
        if own is None or own.crop != spec.native_size[0]:
            own = imagenet_preprocessing(spec.native_size[0])
        preprocess = own.transform()
        categories = imagenet_categories() if outputs in (None, 1000) else [f"class {i}" for i in range(outputs)]
    return LoadedModel(spec=spec, module=module, weights=state, categories=categories, preprocess=preprocess)


def resolve_published(module, spec: ModelSpec, **kwargs) -> WeightsState:
    """The published weights of `spec` into `module`: torchvision's through torch hub, timm's through the
    Hugging Face Hub, the package's own (the demo model's) from its folder; where none are published, random
    weights and the precise reason."""
    if spec.weights is not None:
        return resolve_pretrained(module, spec.weights_url, **kwargs)
    if spec.hub_weights is not None:
        return resolve_hub(module, spec.hub_weights, **kwargs)
    if spec.shipped_weights is not None:
        return load_shipped(module, spec.shipped_weights)
    return WeightsState("random", "none", f"{spec.no_weights or 'no published weights are known for this model'};"
                        f" {OPEN_WEIGHTS_HINT}")


@dataclass(frozen=True)
class RetryResult:
    """What "Retry download" did: the model to use (the same object when nothing changed) and a sentence."""

    loaded: LoadedModel
    changed: bool
    message: str


def retry_download(
    loaded: LoadedModel,
    *,
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
    timeout: float = 15.0,
) -> RetryResult:
    """Try the published weights of a model with random weights again. On failure the model is returned
    unchanged (its seeded random weights included) with what happened: "still offline: … — weights
    unchanged"; it is never re-initialised behind the user's back."""
    if not loaded.weights.is_random:
        return RetryResult(loaded, False, f"weights already loaded ({loaded.weights.describe()}) — weights unchanged")
    fresh = load_model(loaded.spec, weights="auto", progress=progress, cancel=cancel, timeout=timeout,
                       outputs=len(loaded.categories))
    state = fresh.weights
    if not state.is_random:
        return RetryResult(fresh, True, f"weights loaded: {state.describe()}")
    reason = state.reason or "no weights found"
    if state.offline:
        reason = "still offline: " + reason.removeprefix("download failed: ")
    return RetryResult(loaded, False, f"{reason} — weights unchanged")

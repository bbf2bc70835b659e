"""Load a zoo model with its weights, its preprocessing and its category names."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from explorer.core.cancel import CancelToken, ProgressCallback
from explorer.core.weights import WeightsState, load_weights_file, resolve_pretrained
from explorer.core.zoo import ModelSpec, get_spec


@dataclass
class LoadedModel:
    """A ready-to-run network (eval mode) and everything needed to interpret its output."""

    spec: ModelSpec
    module: Any  # torch.nn.Module
    weights: WeightsState
    categories: list[str]

    @property
    def name(self) -> str:
        return self.spec.name

    def transforms(self):
        return self.spec.transforms()


def load_model(
    name: str,
    *,
    weights: str | os.PathLike = "auto",
    allow_download: bool = True,
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
    timeout: float = 15.0,
) -> LoadedModel:
    """Build `name` on the CPU and give it weights.

    weights: "auto" (hub cache, then download; random with the reason when both fail), "none"
    (random on purpose), or a path to a .pth/.pt/.safetensors file (WeightsError if it does not fit).
    """
    spec = get_spec(name)
    module = spec.build()
    if isinstance(weights, str) and weights == "none":
        state = WeightsState("random", "none", "no weights requested")
    elif isinstance(weights, str) and weights == "auto":
        state = resolve_pretrained(
            module, spec.weights_url, allow_download=allow_download, progress=progress, cancel=cancel, timeout=timeout
        )
    else:
        state = load_weights_file(module, weights)
    module.eval()
    return LoadedModel(spec=spec, module=module, weights=state, categories=spec.categories())

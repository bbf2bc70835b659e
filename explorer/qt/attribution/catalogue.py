"""What the attribution room's widgets share: the methods' names and parameter rows, how a class and a map
are named, and the panel's state (what the controls chose, what the jobs read).

Plain data, no Qt: the controls, the map view, the evidence views and the panel share it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from explorer.core.attribution.faithfulness import DEFAULT_STEPS
from explorer.core.attribution.methods import AttributionParams

METHOD_NAMES = {
    "integrated_gradients": "Integrated Gradients",
    "saliency": "Saliency",
    "grad_cam": "Grad-CAM",
    "occlusion": "Occlusion",
    "grad_cam_plus_plus": "Grad-CAM++",
    "score_cam": "Score-CAM",
    "eigen_cam": "EigenCAM",
    "layer_cam": "LayerCAM",
    "hires_cam": "HiResCAM",
    "xgrad_cam": "XGrad-CAM",
    "smoothgrad_integrated_gradients": "Integrated Gradients + SmoothGrad",
    "smoothgrad_saliency": "Saliency + SmoothGrad",
}
#: Which parameter rows each method uses.
METHOD_PARAMS = {
    "integrated_gradients": ("ig_steps", "ig_baseline", "internal_batch_size"),
    "saliency": (),
    "grad_cam": ("block", "branch", "cam_map"),
    "occlusion": ("occlusion_window", "occlusion_stride"),
    **{m: ("block", "branch", "cam_map") for m in ("grad_cam_plus_plus", "score_cam", "eigen_cam", "layer_cam", "hires_cam",
                                        "xgrad_cam")},
    "smoothgrad_integrated_gradients": ("ig_steps", "ig_baseline", "internal_batch_size"),
    "smoothgrad_saliency": (),
}
WARNING_COLOR = "#c62828"
#: Blocks the sanity check randomises by default (Adebayo et al. go down the whole network; 5 show the trend).
SANITY_STEPS = 5


def category_label(categories: list[str], index: int | None) -> str:
    """A class as a person reads it: "tabby (281)"; "top-1" for None."""
    if index is None:
        return "top-1"
    name = categories[index] if 0 <= index < len(categories) else f"class {index}"
    return f"{name} ({index})"


def result_name(result) -> str:
    """The method of a map and the layer it was taken on: "Grad-CAM · inception4e"; "" for no map."""
    if result is None:
        return ""
    return METHOD_NAMES[result.method] + (f" · {result.layer}" if result.layer else "")


@dataclass
class AttributionPanelState:
    """What the panel will run and how it shows the result: the controls write it, the jobs read it."""

    method: str = "integrated_gradients"  #: one of explorer.core.attribution.methods.METHODS
    target: int | None = None  #: class index; None = the top-1 class
    block: str | None = None  #: Grad-CAM's block
    branch: int | None = None  #: Grad-CAM's branch of that block; None = the whole block
    display: str = "signed"  #: "signed" (diverging colours) or "absolute" for signed heatmaps
    opacity: float = 0.8  #: of the heatmap over the image
    params: AttributionParams = field(default_factory=AttributionParams)  #: the methods' parameters
    curve_steps: int = DEFAULT_STEPS  #: points of each faithfulness curve after the first
    sanity_steps: int = SANITY_STEPS  #: blocks the sanity check randomises in cascade


def done_text(result, seconds: float, categories: list[str]) -> str:
    """The status line of a finished map: the method, its layer, the class, the time, where it ran and its
    notice (an empty map, a fallback to the CPU)."""
    where = f" on {result.layer}" if result.layer else ""
    device = getattr(result, "device", None)
    on = f" on {device}" if device and device != "cpu" or getattr(result, "notice", None) else ""
    return (f"{METHOD_NAMES[result.method]}{where} for {category_label(categories, result.target)}: "
            f"done in {seconds:.1f} s{on}" + (f". {result.notice}" if result.notice else ""))

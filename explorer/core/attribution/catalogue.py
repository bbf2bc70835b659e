"""The attribution methods as people meet them: their names, which parameters each takes, how a class and a map
are named, and how a class typed by hand is found. The window's controls, its map and evidence views and the
session share it.
"""

from __future__ import annotations

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


def done_text(result, seconds: float, categories: list[str]) -> str:
    """The status line of a finished map: the method, its layer, the class, the time, where it ran and its
    notice (an empty map, a fallback to the CPU)."""
    where = f" on {result.layer}" if result.layer else ""
    device = getattr(result, "device", None)
    on = f" on {device}" if device and device != "cpu" or getattr(result, "notice", None) else ""
    return (f"{METHOD_NAMES[result.method]}{where} for {category_label(categories, result.target)}: "
            f"done in {seconds:.1f} s{on}" + (f". {result.notice}" if result.notice else ""))


def parse_target(text: str, categories: list[str]) -> int | None:
    """The class a person typed in the target box: "" or "top-1…" → None (the top-1); "281", "281: tabby cat",
    a class's exact name (any case), or a piece of exactly one class's "index: name" → its index. ValueError for
    text that names no class, or more than one."""
    text = text.strip()
    if not text or text.lower().startswith("top-1"):
        return None
    entries = [f"{i}: {name}" for i, name in enumerate(categories)]
    head = text.split(":", 1)[0].strip()
    if head.isdigit() and int(head) < len(categories):
        return int(head)
    lowered = text.lower()
    exact = [i for i, name in enumerate(categories) if name.lower() == lowered or entries[i].lower() == lowered]
    if len(exact) == 1:
        return exact[0]
    matches = [i for i, entry in enumerate(entries) if lowered in entry.lower()]
    if len(matches) != 1:
        raise ValueError(f"no single class matches {text!r}")
    return matches[0]

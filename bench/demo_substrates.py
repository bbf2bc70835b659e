"""What deleted pixels should become, measured on the demo model: how often a map's deletion (and insertion) curve
beats every one of the RANDOM_ORDERS random orders, with deletion to the mean colour ("zero") and to the image
blurred ("blur"), as the window computes them (its default steps, its maps' default parameters, the classifier's
network with batch norms folded).

Run: .venv/bin/python bench/demo_substrates.py [--count 30] [--seed 2426] [--steps 50]

Maps: the object's own mask (the best a map can point), Grad-CAM at the last block, Integrated Gradients with the
window's defaults (black baseline, 50 steps). Insertion starts from the image blurred whatever deletion's substrate.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from explorer.core.attribution.faithfulness import (
    DEFAULT_STEPS,
    RANDOM_ORDERS,
    curve_network,
    default_cell,
    faithfulness_curves,
)
from explorer.core.attribution.methods import AttributionParams, attribute, with_normalisation
from explorer.core.demo.drawing import draw_images
from explorer.core.demo.training import network_input


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--count", type=int, default=30)
    ap.add_argument("--seed", type=int, default=2426)
    ap.add_argument("--steps", type=int, default=DEFAULT_STEPS)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from explorer.core.graph.capture import CaptureModel
    from explorer.core.model.graphs import zoo_block_graph
    from explorer.core.model.loading import load_model

    loaded = load_model("shapes_inception")
    cm = CaptureModel(loaded.module, zoo_block_graph("shapes_inception"))
    cm.eval()
    fast = curve_network(loaded.module)  # the window: the classifier's folded network
    params = with_normalisation(AttributionParams(), loaded.transforms())
    names = ("mask", "grad_cam", "integrated_gradients")
    wins = {(n, s): [] for n in names for s in ("zero", "blur")}
    inserted = {n: [] for n in names}
    started = time.perf_counter()
    for d in draw_images(args.count, args.seed):
        x = network_input(d.image[None])
        maps = {"mask": d.mask.astype(np.float64),
                "grad_cam": attribute(cm, x, "grad_cam", d.label, node="inception5a", params=params).heatmap,
                "integrated_gradients": attribute(cm, x, "integrated_gradients", d.label, params=params).heatmap}
        refs = {"zero": None, "blur": None}
        for name, heat in maps.items():
            for substrate in ("zero", "blur"):
                kinds = ("deletion", "insertion") if substrate == "blur" else ("deletion",)
                curves = faithfulness_curves(fast, x, heat, d.label, kinds=kinds, steps=args.steps,
                                             random_scores=refs[substrate], deletion_substrate=substrate)
                refs[substrate] = {k: c.random_runs for k, c in curves.items()}
                wins[(name, substrate)].append(curves["deletion"].better_than_random)
                if substrate == "blur":
                    inserted[name].append(curves["insertion"].better_than_random)
    print(f"{args.count} drawn images of seed {args.seed}, {args.steps} steps, {RANDOM_ORDERS} random orders of "
          f"{default_cell(64, 64)}-px squares, {time.perf_counter() - started:.0f} s")
    print("beats every random order:      deletion to zero   deletion to blur   insertion from blur")
    for n in names:
        print(f"  {n:28s} {np.mean(wins[(n, 'zero')]):16.0%} {np.mean(wins[(n, 'blur')]):18.0%} "
              f"{np.mean(inserted[n]):20.0%}")


if __name__ == "__main__":
    main()

"""The README's screenshot of branch anatomy (Branch shares tab: knock-outs, the decomposition, the knock-out
overlay) on the demo model at 1280×800; run under Xvfb:

    xvfb-run -a -s "-screen 0 1280x800x24" .venv/bin/python docs/screenshots/make_knockouts_demo.py

The demo model (shapes_inception, its shipped weights) classifies the drawn star; in the Branch shares tab the
branch shares are computed, inception3b is selected, every branch is knocked out on its own (zeros) and
inception3b is decomposed; View → Overlay → Knock-out effect colours the graph (zoomed out once, so the
boxes clear the legend). Prints each of inception3b's knock-outs (Δ p(target) and the top-1 then), the
decomposition and each block's largest drop, the numbers the README quotes. Saves knockouts_demo.png beside
this script (or under --out).
"""

from __future__ import annotations

import argparse
from pathlib import Path

HERE = Path(__file__).resolve().parent
BLOCK = "inception3b"


def report(st) -> None:
    """The numbers the README quotes: the star's knock-outs at BLOCK (and any that change the top-1), the
    decomposition, and each block's largest drop (what the overlay colours)."""
    from explorer.core.demo.task import SHAPE_CLASSES as names

    effects, top = st.knockouts, st.classification.top[0]
    print("top-1:", top.label, f"{top.prob:.3f};", f"target {names[effects.target]}: p {effects.prob:.3f}")
    for e in effects.effects:
        if e.block == BLOCK or e.top1_changed:
            changed = "  (top-1 changed)" if e.top1_changed else ""
            print(f"  {e.block} branch {e.branch_index + 1}: Δp {e.delta_prob:+.3f} → p {e.prob:.3f}, "
                  f"top-1 {names[e.top1]}{changed}")
    c = st.conductance
    print(f"  {c.block} conductance:", " ".join(f"{v:+.3f}" for v in c.contributions),
          f"sum {c.total:.3f}; f(x) - f(baseline) = {c.output - c.baseline_output:.3f}")
    worst = {}
    for e in effects.effects:
        worst[e.block] = min(worst.get(e.block, 0.0), e.delta_prob)
    print("  largest drop per block:", ", ".join(f"{b} {v:+.3f}" for b, v in worst.items()))


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=str(HERE), help="folder for the shot (default: beside this script)")
    args = ap.parse_args()

    from PySide6.QtCore import Qt

    from demo_window import DemoWindow

    demo = DemoWindow()
    window, st, until = demo.window, demo.window.state, demo.until
    demo.show_drawn_star()
    images = window.images
    panel = images.shares
    dock = images.shares_dock
    dock.show()
    dock.raise_()
    window.resizeDocks([dock], [round(window.height() * 0.55)], Qt.Orientation.Vertical)
    until(lambda: panel.x is not None)
    panel.compute_button.click()
    until(lambda: st.branch_evidence is not None)
    window.view.select(BLOCK, center=False)  # the panel follows the selected block
    until(lambda: panel.block == BLOCK)
    panel.knockout_button.click()
    until(lambda: st.knockouts is not None and panel.knockout_button.isEnabled(), 300)
    panel.decompose_button.click()
    until(lambda: st.conductance is not None and st.conductance.block == BLOCK and panel.decompose_button.isEnabled(),
          300)
    st.overlay = "knockout"  # View → Overlay → Knock-out effect
    until(lambda: window.view.overlay_values is not None)
    # View → Zoom out: the boxes clear the overlay's legend in the corner, and 3a to 4a show their colours.
    window.view.zoom_out()
    boxes = window.view.boxes
    between = (boxes[BLOCK].sceneBoundingRect().center() + boxes["maxpool3"].sceneBoundingRect().center()) / 2
    window.view.centerOn(between)
    demo.wait(800)
    path = demo.save(args.out, "knockouts_demo.png")
    print("saved", path)
    report(st)
    window.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

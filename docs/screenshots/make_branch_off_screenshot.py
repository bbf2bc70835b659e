"""The README's screenshot of a branch switched off (issue 26), on the demo model at 1280×800; run under Xvfb:

    xvfb-run -a -s "-screen 0 1280x800x24" .venv/bin/python docs/screenshots/make_branch_off_screenshot.py

The demo model (shapes_inception, its shipped weights) classifies the drawn star; inception3b is opened and its
branch 2 switched off through the graph's right-click menu (its entry, triggered); the shot shows the strip above
the graph, the branch greyed and tagged "off", and the top-5 of the modified network under its heading. Saves
branch_off_demo.png beside this script (or under --out).
"""

from __future__ import annotations

import argparse
from pathlib import Path

HERE = Path(__file__).resolve().parent
BLOCK, BRANCH = "inception3b", 1


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=str(HERE), help="folder for the shot (default: beside this script)")
    args = ap.parse_args()

    from demo_window import DemoWindow

    demo = DemoWindow()
    window, st, until = demo.window, demo.window.state, demo.until
    demo.show_drawn_star()
    window.graph_page.expand(BLOCK)
    menu = window.branch_switches.menu_for(f"{BLOCK}/b{BRANCH}")
    [switch] = [a for a in menu.actions() if a.text() == f"Switch {BLOCK} branch {BRANCH + 1} off"]
    switch.trigger()
    until(lambda: st.shown_image is not None and st.classification is not None and st.result_key.off is not None)
    dock = window.images.classify_dock
    dock.raise_()
    window.view.select(BLOCK, center=False)  # Details shows the block; the branch keeps its dashed border
    window.view.centerOn(window.view.frames[BLOCK])
    demo.wait(600)
    path = demo.save(args.out, "branch_off_demo.png")
    print("saved", path, "top-1:", st.classification.top[0].label, f"{st.classification.top[0].prob:.3f}")
    window.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

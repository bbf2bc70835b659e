"""The block-graph diagram without Qt: boxes, edges and frames, and where they go.

The Qt view (`explorer.qt.graph.graph_view`) paints what `layout` places; benchmarks lay out without a display.
"""

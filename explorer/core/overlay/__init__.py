"""Quantities per node for the graph's overlay: static, per image, attribution, timing."""

"""Presentation mode, data-flow slides and the handout PDF."""

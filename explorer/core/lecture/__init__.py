"""Lecture material as plain data: data-flow slides and the handout."""

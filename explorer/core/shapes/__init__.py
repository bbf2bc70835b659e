"""Shapes at any input size: the trace, its exports, the paper's tables, compare, factorisation,
and the shipped previews."""

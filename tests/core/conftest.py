"""Shared fixtures of the engine tests: block graphs are built once per session (meta device)."""

import functools

import pytest


@functools.cache
def _graph(name):
    from explorer.core.graph.blockgraph import build_block_graph
    from explorer.core.model.zoo import get_spec

    return build_block_graph(get_spec(name))


@pytest.fixture(scope="session")
def graph_of():
    """graph_of("googlenet") -> the model's BlockGraph, built once."""
    return _graph

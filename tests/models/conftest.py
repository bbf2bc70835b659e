"""Shared fixtures of the network-definition tests: block graphs (meta device) and real models, built once."""

import functools

import pytest


@functools.cache
def _graph(name):
    from explorer.core.graph.blockgraph import build_block_graph
    from explorer.core.model.zoo import get_spec

    return build_block_graph(get_spec(name))


@functools.cache
def _model(name):
    import torch

    from explorer.core.model.zoo import get_spec

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return get_spec(name).build()


@pytest.fixture(scope="session")
def graph_of():
    """graph_of("inception_v4") -> the model's BlockGraph, built once."""
    return _graph


@pytest.fixture(scope="session")
def model_of():
    """model_of("inception_v4") -> the model with random weights on the CPU (eval mode), built once."""
    return _model

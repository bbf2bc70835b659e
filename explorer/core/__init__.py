"""The Qt-free engine: model zoo, weights, block graph, shape tracing.

Every function here returns plain data (dataclasses, numpy arrays, networkx graphs) and never
imports Qt, so the command line, the tests and the window share one implementation.
"""

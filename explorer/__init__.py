"""Inception Explorer: look inside Inception-family convolutional networks."""

__version__ = "0.1.0"

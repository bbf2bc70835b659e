"""The block graph's view and its exporters."""

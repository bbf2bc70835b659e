"""Per-branch activations and the channel panel."""

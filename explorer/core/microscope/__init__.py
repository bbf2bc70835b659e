"""Per-branch activations, feature visualisation and dataset examples."""

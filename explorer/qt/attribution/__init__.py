"""The attribution panel (its controls, map view and evidence views) and the branch-share chart."""

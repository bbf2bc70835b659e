"""The attribution panel and the branch-share chart."""

"""The block graph and what it is built from: fx tracing, the shape program, the module tree,
the capture network that records every branch, and find."""

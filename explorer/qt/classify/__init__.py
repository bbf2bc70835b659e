"""The classify panel."""

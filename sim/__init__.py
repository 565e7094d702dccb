"""A deterministic simulator that drives the same protocol objects on virtual time."""

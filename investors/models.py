"""investors models."""

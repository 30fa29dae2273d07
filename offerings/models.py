"""offerings models."""

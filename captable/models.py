"""captable models."""

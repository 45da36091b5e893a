"""models stage (see README)."""

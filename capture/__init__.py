"""capture stage (see README)."""

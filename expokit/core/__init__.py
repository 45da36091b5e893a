"""Shared infrastructure: errors, atomic file writes, hashing, parallel execution."""

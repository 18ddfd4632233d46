"""Rows of the token store (cached access and session tokens)."""

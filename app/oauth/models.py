"""Rows of the OAuth handshake (OAuth apps, handshake states, secrets handed out as secret_id)."""

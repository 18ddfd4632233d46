"""The managed OAuth handshake: OAuth apps, initiate, callback, secret_id."""

"""Calls to a source's own API: authenticators, the token store, templated requests."""

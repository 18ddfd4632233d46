"""Persistent background jobs: rows in the database, claimed by workers under a lease."""

"""WSGI entry point: ``gunicorn wsgi:app`` (and what ``flask`` finds on its own)."""

from app import create_app

app = create_app()

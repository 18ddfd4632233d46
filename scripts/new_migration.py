"""Autogenerate a migration against a scratch SQLite database at the newest schema.

Usage: .venv/bin/python scripts/new_migration.py 0002 "message"
Review the generated file before committing: autogenerate misses some changes.
"""

import sys
import tempfile

from alembic import command
from sqlalchemy import create_engine

from app.migrations import alembic_config, upgrade

with tempfile.TemporaryDirectory() as folder:
    engine = create_engine(f"sqlite:///{folder}/scratch.db")
    upgrade(engine)
    command.revision(alembic_config(engine), message=sys.argv[2], rev_id=sys.argv[1], autogenerate=True)

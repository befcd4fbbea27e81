"""Alembic migrations of the directory schema (run by :meth:`Directory.upgrade`)."""

"""Alembic revision scripts; a package so that setuptools ships them with popgate."""

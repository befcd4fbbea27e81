"""Fuzz harnesses for popgate's sans-IO protocol core (run from CI through tests/protocol)."""

from __future__ import annotations

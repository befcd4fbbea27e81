"""The admin center's the Monitoring page (audit log)."""

from __future__ import annotations

from fastapi import APIRouter

from popgate.host._ecp import ECP_PREFIX

__all__ = ["pages"]


def pages() -> APIRouter:
    """The routes of the Monitoring page (audit log)."""
    return APIRouter(prefix=ECP_PREFIX, include_in_schema=False)

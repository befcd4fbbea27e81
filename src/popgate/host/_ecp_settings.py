"""The admin center's the Servers and POP3 settings pages."""

from __future__ import annotations

from fastapi import APIRouter

from popgate.host._ecp import ECP_PREFIX

__all__ = ["pages"]


def pages() -> APIRouter:
    """The routes of the Servers and POP3 settings pages."""
    return APIRouter(prefix=ECP_PREFIX, include_in_schema=False)

"""Stub: the owner of this page replaces this module (UI-CONTRACT.md)."""

from __future__ import annotations

from starlette.routing import BaseRoute

routes: list[BaseRoute] = []

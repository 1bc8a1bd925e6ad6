"""What the web app holds for its lifetime: settings, the database, the billers."""
from __future__ import annotations

from dataclasses import dataclass

from fastapi import Request

from core.billers.registry import BillerRegistry
from core.config import Settings
from core.db import Database


@dataclass
class AppState:
    settings: Settings
    db: Database
    billers: BillerRegistry


def get_state(request: Request) -> AppState:
    return request.app.state.fatoura

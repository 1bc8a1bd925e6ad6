"""The sandbox billers served over the generic HTTP biller contract (docs/biller-http-contract.md)."""
from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(prefix="/sandbox/billers", tags=["sandbox"])

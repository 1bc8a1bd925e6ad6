"""`POST /webhooks/billers/{biller}`: signed events from a biller (a new invoice was issued).

The contract is in docs/biller-http-contract.md; verification and effects in
core.services.biller_events. Answers: 200 {"outcome", "queued"}; 401 forged; 409 replayed;
400 malformed; 404 unknown biller; 503 the biller's API did not answer (send again later).
"""
from __future__ import annotations

import logging

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from core.services.biller_events import MAX_BODY, EventRefused, receive
from webhooks.state import AppState, get_state

log = logging.getLogger("fatoura.biller_events")

router = APIRouter()


@router.post("/webhooks/billers/{biller}")
async def biller_event(biller: str, request: Request, state: AppState = Depends(get_state)) -> JSONResponse:
    body = await request.body()
    try:
        if len(body) > MAX_BODY:
            raise EventRefused(400, "body too large")
        outcome, queued = await receive(state.settings, state.db, state.billers, biller[:32], body,
                                        request.headers.get("x-fatoura-timestamp"),
                                        request.headers.get("x-fatoura-signature"))
    except EventRefused as refused:
        log.info("biller event for %s refused: %s", biller[:32], refused.reason)
        return JSONResponse({"error": refused.reason}, status_code=refused.status)
    return JSONResponse({"outcome": outcome, "queued": queued})

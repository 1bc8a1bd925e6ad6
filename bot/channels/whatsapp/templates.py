"""Approved utility templates: which one carries a notification outside the 24-hour window.

Each outbox kind maps to a template name and the names of its body parameters, taken in order
from the payload's `params` (plain strings already formatted for the customer's locale). A kind
without a template, or whose params are missing, goes as the generic one-parameter template with
the message's text. Names, parameters and language codes are settings (WHATSAPP_TEMPLATES,
WHATSAPP_TEMPLATE_LANGUAGES) because they are whatever was approved in the WhatsApp Manager.
"""
from __future__ import annotations

from typing import Any

from bot.channels.whatsapp.limits import TEMPLATE_PARAM_LIMIT, fit

GENERIC = "*"
DEFAULT_TEMPLATES: dict[str, dict[str, Any]] = {
    "invoice_new": {"name": "fatoura_invoice_new", "params": ["issuer", "number", "amount", "due_date"]},
    "invoice_reminder": {"name": "fatoura_invoice_reminder", "params": ["issuer", "number", "amount", "due_date"]},
    # header "document": the template has a document header, filled with the payload's receipt.
    "payment_paid": {"name": "fatoura_payment_paid", "params": ["amount", "transaction_id"], "header": "document"},
    "agent_reply": {"name": "fatoura_agent_reply", "params": ["agent", "text"]},
    GENERIC: {"name": "fatoura_notice", "params": ["text"]},
}
DEFAULT_LANGUAGES = {"fr": "fr_MA", "ar": "ar_MA", "en": "en"}


def check(templates: dict[str, Any]) -> None:
    """Refuse a WHATSAPP_TEMPLATES setting a send would trip on, with what to fix."""
    for kind, spec in templates.items():
        if not isinstance(spec, dict) or not isinstance(spec.get("name"), str) or not spec["name"]:
            raise ValueError(f"WHATSAPP_TEMPLATES[{kind!r}] needs a template \"name\"")
        if not isinstance(spec.get("params", []), list) or not all(isinstance(p, str) for p in spec.get("params", [])):
            raise ValueError(f"WHATSAPP_TEMPLATES[{kind!r}][\"params\"] must be a list of parameter names")


def clean_param(value: Any) -> str:
    """Meta refuses a parameter with a newline, a tab or more than 4 spaces in a row."""
    return fit(" ".join(str(value).split()), TEMPLATE_PARAM_LIMIT)


def choose(kind: str, payload: dict[str, Any], templates: dict[str, dict[str, Any]],
           has_document: bool) -> tuple[str, list[str], bool]:
    """(template name, body parameters, whether its document header is filled) for one payload."""
    merged = {**DEFAULT_TEMPLATES, **templates}
    spec = merged.get(kind)
    params = payload.get("params") if isinstance(payload.get("params"), dict) else {}
    if spec is not None:
        names = list(spec.get("params") or [])
        wants_document = spec.get("header") == "document"
        if all(params.get(name) not in (None, "") for name in names) and (has_document or not wants_document):
            return spec["name"], [clean_param(params[name]) for name in names], wants_document
    generic = merged[GENERIC]
    return generic["name"], [clean_param(payload.get("text") or "")], False


def message(name: str, language: str, parameters: list[str], document: dict[str, Any] | None = None) -> dict[str, Any]:
    components: list[dict[str, Any]] = []
    if document is not None:
        components.append({"type": "header", "parameters": [{"type": "document", "document": document}]})
    if parameters:
        components.append({"type": "body", "parameters": [{"type": "text", "text": p} for p in parameters]})
    return {"type": "template", "template": {"name": name, "language": {"code": language}, "components": components}}

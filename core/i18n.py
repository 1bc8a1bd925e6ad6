"""gettext catalogs (locales/<lang>/LC_MESSAGES/messages.po) and Babel formatting per locale.

The UI languages are fr (default), ar and en; amounts and dates use the Moroccan regional
locales (fr_MA, ar_MA), whose separators differ from plain fr / ar. Compiled .mo files are built
from the .po files at start when missing or older, so they are never committed stale.
"""
from __future__ import annotations

import gettext as _gettext
import os
from datetime import date
from datetime import datetime as _datetime
from decimal import Decimal
from functools import lru_cache
from pathlib import Path
from zoneinfo import ZoneInfo

from babel import Locale
from babel.dates import format_date as _format_date
from babel.dates import format_datetime as _format_datetime
from babel.dates import format_time as _format_time
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.numbers import format_currency, format_decimal

from core.errors import FatouraError, N_

LANGUAGES = ("fr", "ar", "en")
DEFAULT_LANGUAGE = "fr"
DOMAIN = "messages"
BABEL_LOCALES = {"fr": "fr_MA", "ar": "ar_MA", "en": "en"}
TIMEZONE = ZoneInfo("Africa/Casablanca")
LANGUAGE_NAMES = {"fr": "Français", "ar": "العربية", "en": "English"}

__all__ = ["N_", "Translator", "translator", "pick_language"]


def locales_dir() -> Path:
    return Path(os.environ.get("FATOURA_LOCALES_DIR") or Path(__file__).resolve().parent.parent / "locales")


def compile_catalogs(directory: Path | None = None, *, force: bool = False) -> list[Path]:
    """Compile each .po into its .mo when the .mo is missing or older; returns what was written."""
    directory = directory or locales_dir()
    written = []
    for po_path in sorted(directory.glob(f"*/LC_MESSAGES/{DOMAIN}.po")):
        mo_path = po_path.with_suffix(".mo")
        if not force and mo_path.exists() and mo_path.stat().st_mtime >= po_path.stat().st_mtime:
            continue
        with po_path.open("rb") as po_file:
            catalog = read_po(po_file, locale=po_path.parent.parent.name)
        tmp = mo_path.with_suffix(".mo.tmp")
        with tmp.open("wb") as mo_file:
            write_mo(mo_file, catalog, use_fuzzy=False)
        tmp.replace(mo_path)
        written.append(mo_path)
    return written


def pick_language(code: str | None) -> str:
    """A client's language code ('ar', 'fr-FR', 'en_US', None) -> one of our languages."""
    if not code:
        return DEFAULT_LANGUAGE
    base = code.replace("_", "-").split("-", 1)[0].lower()
    return base if base in LANGUAGES else DEFAULT_LANGUAGE


@lru_cache(maxsize=None)
def _catalog(language: str) -> _gettext.NullTranslations:
    compile_catalogs()
    try:
        return _gettext.translation(DOMAIN, localedir=str(locales_dir()), languages=[language])
    except FileNotFoundError:
        return _gettext.NullTranslations()


class Translator:
    """Everything a reply in one language needs: `_`, `ngettext` and Babel formatting."""

    def __init__(self, language: str) -> None:
        self.language = language if language in LANGUAGES else DEFAULT_LANGUAGE
        self.locale = BABEL_LOCALES[self.language]
        self._catalog = _catalog(self.language)

    @property
    def rtl(self) -> bool:
        return Locale.parse(self.locale).character_order == "right-to-left"

    def _(self, msgid: str, **params: object) -> str:
        text = self._catalog.gettext(msgid)
        return text.format(**params) if params else text

    gettext = _

    def ngettext(self, singular: str, plural: str, n: int, **params: object) -> str:
        text = self._catalog.ngettext(singular, plural, n)
        return text.format(n=n, **params)

    def error(self, error: FatouraError) -> str:
        return self._(error.msgid, **error.params)

    def amount(self, value: Decimal) -> str:
        if not isinstance(value, Decimal):
            raise TypeError("amounts are Decimal")
        return format_currency(value, "MAD", locale=self.locale)

    def number(self, value: Decimal) -> str:
        return format_decimal(value, format="#,##0.00", locale=self.locale)

    def date(self, value: date | None, fmt: str = "short") -> str:
        if value is None:
            return "—"
        if fmt == "short":
            return value.strftime("%d/%m/%Y")
        return _format_date(value, format=fmt, locale=self.locale)

    def datetime(self, value: _datetime, fmt: str = "short") -> str:
        local = value.astimezone(TIMEZONE)
        if fmt == "short":
            return local.strftime("%d/%m/%Y %H:%M")
        return _format_datetime(local, format=fmt, locale=self.locale)

    def time(self, value: _datetime) -> str:
        return _format_time(value.astimezone(TIMEZONE), format="HH:mm", locale=self.locale)

    def period(self, billing_period: str | None) -> str:
        """'01/2017' -> 'janvier 2017' / 'يناير 2017' / 'January 2017'."""
        if not billing_period:
            return "—"
        month, year = billing_period.split("/")
        return _format_date(date(int(year), int(month), 1), format="MMMM y", locale=self.locale)


@lru_cache(maxsize=None)
def translator(language: str | None) -> Translator:
    return Translator(pick_language(language))

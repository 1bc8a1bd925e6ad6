"""`fatoura i18n extract|update|compile|check`: the gettext catalogs in locales/, with Babel.

- extract: scan the code (babel.cfg) into locales/messages.pot.
- update:  extract, then merge the template into locales/{fr,ar,en}/LC_MESSAGES/messages.po
           (creating a missing catalog with its locale's plural forms). The en catalog is the
           source language: its msgstr are set to the msgid.
- compile: .po -> .mo (core.i18n.compile_catalogs), also done at start when a .mo is stale.
- check:   exit 1, listing them, when a msgid of the code is missing from a catalog, or its
           msgstr is empty or fuzzy, or its {placeholders} differ from the msgid's.

Files are rewritten only when their messages change, so the dates in the headers do not make
noise in git.
"""
from __future__ import annotations

import io
import re
import string
import sys
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path

from babel import Locale
from babel.messages.catalog import Catalog, Message
from babel.messages.extract import extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.pofile import read_po, write_po
from babel.util import LOCALTZ

from core.i18n import DOMAIN, LANGUAGES, compile_catalogs, locales_dir

ROOT = Path(__file__).resolve().parent.parent
LOCALES = locales_dir()  # FATOURA_LOCALES_DIR where the package is installed (the image)
MAPPING = ROOT / "babel.cfg"
POT = LOCALES / f"{DOMAIN}.pot"
SOURCE_LANGUAGE = "en"
# `N_` marks a msgid for later translation (core.errors); `t._` / `t.ngettext` are the
# Translator's methods: Babel matches a call by its name, attribute calls included.
KEYWORDS: dict[str, tuple[int, ...] | None] = {"_": None, "N_": None, "gettext": None, "ngettext": (1, 2)}
COMMENT_TAGS = ("Translators:",)
# GNU gettext's Arabic rule (zero, one, two, few 3-10, many 11-99, other 100-102), which
# translation tools expect; Babel's CLDR-derived expression orders the last two forms the other way.
PLURAL_FORMS = {
    "ar": "nplurals=6; plural=(n==0 ? 0 : n==1 ? 1 : n==2 ? 2 : n%100>=3 && n%100<=10 ? 3 : n%100>=11 ? 4 : 5);",
}
ACTIONS = ("extract", "update", "compile", "check")

_DATE_LINE = re.compile(rb'^"(POT-Creation-Date|PO-Revision-Date): .*\\n"\n', re.MULTILINE)


def po_path(language: str, locales: Path = LOCALES) -> Path:
    return locales / language / "LC_MESSAGES" / f"{DOMAIN}.po"


def extract_catalog(root: Path = ROOT) -> Catalog:
    """Every msgid the code marks (babel.cfg decides which files), as a template catalog."""
    with MAPPING.open(encoding="utf-8") as cfg:
        method_map, options_map = parse_mapping_cfg(cfg, str(MAPPING))
    catalog = Catalog(project="Fatoura", version="0.1", copyright_holder="Fatoura",
                      msgid_bugs_address="", charset="utf-8", fuzzy=False)
    for filename, lineno, message, comments, context in extract_from_dir(
        str(root), method_map, options_map, keywords=KEYWORDS, comment_tags=COMMENT_TAGS,
        strip_comment_tags=True,
    ):
        catalog.add(message, None, [(filename, lineno)], auto_comments=comments, context=context)
    return catalog


def _po_bytes(catalog: Catalog) -> bytes:
    buffer = io.BytesIO()
    write_po(buffer, catalog, width=76, ignore_obsolete=True, include_lineno=False)
    return buffer.getvalue()


def _write_if_changed(path: Path, catalog: Catalog) -> bool:
    data = _po_bytes(catalog)
    if path.exists() and _DATE_LINE.sub(b"", path.read_bytes()) == _DATE_LINE.sub(b"", data):
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_bytes(data)
    tmp.replace(path)
    return True


def extract(pot_path: Path = POT) -> Catalog:
    """Write the template to `pot_path` (only when its messages changed); return it."""
    catalog = extract_catalog()
    changed = _write_if_changed(pot_path, catalog)
    print(f"{pot_path}: {len(catalog)} messages{'' if changed else ' (unchanged)'}")
    return catalog


def _read(path: Path, language: str) -> Catalog:
    with path.open("rb") as po_file:
        return read_po(po_file, locale=language)


def _fill_source(catalog: Catalog) -> None:
    """en is the language of the msgids: its translation is the msgid itself."""
    for message in catalog:
        if not message.id:
            continue
        message.string = tuple(message.id) if message.pluralizable else message.id
        message.flags.discard("fuzzy")


def update(template: Catalog | None = None, locales: Path = LOCALES) -> None:
    template = template if template is not None else extract(locales / f"{DOMAIN}.pot")
    for language in LANGUAGES:
        path = po_path(language, locales)
        if path.exists():
            catalog = _read(path, language)
            catalog.update(template, update_header_comment=False)
        else:
            catalog = Catalog(locale=Locale.parse(language), domain=DOMAIN, project="Fatoura",
                              version="0.1", copyright_holder="Fatoura", msgid_bugs_address="",
                              charset="utf-8", revision_date=datetime.now(LOCALTZ), fuzzy=False)
            catalog.update(template, no_fuzzy_matching=True)
        catalog.fuzzy = False
        if language in PLURAL_FORMS:
            catalog.mime_headers = [("Plural-Forms", PLURAL_FORMS[language])]
        if language == SOURCE_LANGUAGE:
            _fill_source(catalog)
        changed = _write_if_changed(path, catalog)
        todo = len(problems_in(template, catalog))
        print(f"{path}: {len(catalog)} messages, {todo} to translate{'' if changed else ' (unchanged)'}")


def placeholders(text: str) -> set[str]:
    """The named `{fields}` of a str.format template ('{n}', '{amount}'...)."""
    try:
        return {name for _, name, _, _ in string.Formatter().parse(text) if name is not None}
    except ValueError:
        return {"<unbalanced braces>"}


def _strings(message: Message) -> tuple[str, ...]:
    value = message.string
    return tuple(value) if isinstance(value, (tuple, list)) else (value,)


def placeholder_problem(msgid: str | tuple[str, ...], translation: Message) -> str | None:
    """Why the msgstr's placeholders differ from the msgid's, or None.

    A plural form may leave out `{n}` (Arabic says "one invoice" and "two invoices" in words),
    but every other placeholder must be kept, and none may be invented.
    """
    ids = tuple(msgid) if isinstance(msgid, (tuple, list)) else (msgid,)
    expected = set().union(*(placeholders(i) for i in ids))
    for text in _strings(translation):
        found = placeholders(text or "")
        if len(ids) > 1:
            if not found <= expected or (expected - {"n"}) - found:
                return f"placeholders {sorted(found)} != {sorted(expected)}"
        elif found != expected:
            return f"placeholders {sorted(found)} != {sorted(expected)}"
    return None


def problems_in(template: Catalog, catalog: Catalog) -> list[str]:
    problems = []
    for message in template:
        if not message.id:
            continue
        shown = message.id[0] if isinstance(message.id, (tuple, list)) else message.id
        translation = catalog.get(message.id, message.context)
        if translation is None:
            problems.append(f"missing: {shown!r}")
        elif "fuzzy" in translation.flags:
            problems.append(f"fuzzy: {shown!r}")
        elif not all(_strings(translation)):
            problems.append(f"untranslated: {shown!r}")
        elif (why := placeholder_problem(message.id, translation)) is not None:
            problems.append(f"{why}: {shown!r}")
    return problems


def check(locales: Path = LOCALES, languages: Iterable[str] = LANGUAGES) -> list[str]:
    """Everything wrong with the catalogs against the code, as 'lang: problem' lines."""
    template = extract_catalog()
    problems = []
    for language in languages:
        path = po_path(language, locales)
        if not path.exists():
            problems.append(f"{language}: no catalog at {path}")
            continue
        problems.extend(f"{language}: {problem}" for problem in problems_in(template, _read(path, language)))
    return problems


def run(action: str) -> int:
    if action == "extract":
        extract()
    elif action == "update":
        update()
    elif action == "compile":
        for path in compile_catalogs(LOCALES, force=True):
            print(f"compiled {path}")
    elif action == "check":
        problems = check()
        if problems:
            print("\n".join(problems), file=sys.stderr)
            print(f"{len(problems)} catalog problems: run `fatoura i18n update`, then translate "
                  "the listed msgids in locales/*/LC_MESSAGES/messages.po", file=sys.stderr)
            return 1
        print(f"catalogs complete for {', '.join(LANGUAGES)}")
    else:
        print(f"unknown action {action!r}; expected one of {', '.join(ACTIONS)}", file=sys.stderr)
        return 2
    return 0

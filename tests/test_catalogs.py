"""The gettext catalogs are complete: every msgid of the code is translated in fr, ar and en.

When this fails, run `fatoura i18n update` (or `make i18n-update`) and translate the listed
msgids in locales/{fr,ar}/LC_MESSAGES/messages.po (en is filled from the msgids).
"""
from __future__ import annotations

import re

import pytest
from babel.messages.pofile import read_po

from core.errors import FatouraError, TooManyAttempts, WrongPaymentCode
from core.i18n import LANGUAGES, translator
from fatoura import catalogs

ARABIC = re.compile("[\u0600-\u06ff]")


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    """The code's msgids, extracted in-process into a temporary .pot and read back."""
    pot = tmp_path_factory.mktemp("i18n") / "messages.pot"
    catalogs.extract(pot)
    with pot.open("rb") as pot_file:
        return read_po(pot_file)


@pytest.fixture(scope="module")
def po():
    loaded = {}
    for language in LANGUAGES:
        with catalogs.po_path(language).open("rb") as po_file:
            loaded[language] = read_po(po_file, locale=language)
    return loaded


def _msgids(template):
    return [message for message in template if message.id]


def test_extraction_finds_the_markers(template):
    ids = {message.id if isinstance(message.id, str) else message.id[0] for message in _msgids(template)}
    # N_() markers in core.errors, and every typed error's msgid.
    assert WrongPaymentCode.msgid in ids
    assert TooManyAttempts.msgid in ids
    assert FatouraError.msgid in ids


def test_translator_method_calls_are_extracted(tmp_path, monkeypatch):
    """`t._("...")`, `t.ngettext(...)` and `N_(...)` are found by name, attribute calls included."""
    (tmp_path / "core").mkdir()
    (tmp_path / "core" / "sample.py").write_text(
        'def reply(t, n, x):\n'
        '    a = t._("Hello {name}", name=x)\n'
        '    b = t.ngettext("{n} invoice", "{n} invoices", n)\n'
        '    return a, b, N_("Marked")\n',
        encoding="utf-8",
    )
    ids = {message.id if isinstance(message.id, str) else tuple(message.id)
           for message in catalogs.extract_catalog(tmp_path) if message.id}
    assert ids == {"Hello {name}", ("{n} invoice", "{n} invoices"), "Marked"}


@pytest.mark.parametrize("language", LANGUAGES)
def test_every_msgid_is_translated(template, po, language):
    problems = catalogs.problems_in(template, po[language])
    assert not problems, (
        f"{len(problems)} msgids not translated in locales/{language}/LC_MESSAGES/messages.po "
        "(run `fatoura i18n update`, then translate):\n" + "\n".join(problems)
    )


@pytest.mark.parametrize("language", LANGUAGES)
def test_placeholders_are_kept(template, po, language):
    wrong = []
    for message in _msgids(template):
        translation = po[language].get(message.id, message.context)
        if translation is None or not all(catalogs._strings(translation)):
            continue  # reported by test_every_msgid_is_translated
        why = catalogs.placeholder_problem(message.id, translation)
        if why:
            wrong.append(f"{message.id!r}: {why}")
    assert not wrong, "\n".join(wrong)


def test_english_is_the_msgid(template, po):
    for message in _msgids(template):
        translation = po["en"].get(message.id, message.context)
        if translation is not None:
            assert catalogs._strings(translation) == (tuple(message.id) if message.pluralizable else (message.id,))


def test_arabic_has_six_plural_forms(po):
    assert po["ar"].num_plurals == 6
    assert po["fr"].num_plurals == 2
    assert po["en"].num_plurals == 2


def test_placeholder_rules():
    assert catalogs.placeholders("Page {page} of {pages}") == {"page", "pages"}
    assert catalogs.placeholders("no field") == set()


def test_compiled_catalogs_translate_errors():
    catalogs.compile_catalogs(catalogs.LOCALES)
    error = WrongPaymentCode()
    french = translator("fr").error(error)
    arabic = translator("ar").error(error)
    english = translator("en").error(error)
    assert english == WrongPaymentCode.msgid
    assert french != english and "code de paiement" in french.lower()
    assert arabic != english and ARABIC.search(arabic)
    assert "فاتورة" in arabic or "فاتورت" in arabic
    waiting = translator("fr").error(TooManyAttempts(minutes=30))
    assert "30" in waiting and waiting != TooManyAttempts.msgid.format(minutes=30)

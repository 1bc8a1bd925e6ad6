"""All invoice PDFs of a year in one ZIP: DIAC keeps originals 2 years (seed 004), customers keep theirs."""
from __future__ import annotations

import re
import tempfile
import zipfile
from typing import Awaitable, Callable, Iterable


async def zip_pdfs(numbers: Iterable[tuple[str, str]], fetch: Callable[[str], Awaitable[bytes]]) -> bytes:
    """(folder, invoice number) pairs -> one ZIP. Each PDF is written as soon as it is fetched, into
    a spooled temporary file, so a large archive goes to disk instead of piling up in memory."""
    with tempfile.SpooledTemporaryFile(max_size=8 * 1024 * 1024) as spool:
        with zipfile.ZipFile(spool, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            for folder, number in numbers:
                archive.writestr(f"{_folder(folder)}/facture-{number}.pdf", await fetch(number))
        spool.seek(0)
        return spool.read()


_UNSAFE = re.compile("[\u200e\u200f\u061c\u202a-\u202e\u2066-\u2069/\\\\\x00-\x1f]")


def _folder(name: str) -> str:
    """An account's name as a folder: no bidi marks (an Arabic name isolates its phone number), no
    slash that would nest folders, nothing invisible."""
    return _UNSAFE.sub("", name).strip() or "factures"

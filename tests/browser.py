"""Drive the web chat in headless Chromium, for browser tests (`@pytest.mark.browser`).

    from tests.browser import ChatPage, chat_in_browser

    async def test_amina_pays(...):
        async with chat_in_browser(app, lang="fr") as chat:     # uvicorn + Chromium + /chat open
            await chat.press("Lier un compte")
            await chat.send("06 23 36 34 44")
            await chat.wait_for_bot("factures impayées")
            filename, content = await chat.download()          # the last file card
            await chat.screenshot("amina-fr")                   # artifacts/amina-fr.png

The server runs in the test's own event loop (not a thread), so an app built on the test's
database fixtures (aiosqlite, asyncpg) works as is. Chromium is /usr/bin/chromium or
FATOURA_TEST_CHROMIUM; without it the test is skipped, and fails under CI=true.
"""
from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from pathlib import Path
from typing import Any, AsyncIterator, Iterator

import pytest
import uvicorn

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
ARTIFACTS = Path(__file__).resolve().parent.parent / "artifacts"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--no-first-run", "--disable-sync"]
PHONE = {"width": 390, "height": 780}


def chromium_executable() -> str:
    path = os.environ.get("FATOURA_TEST_CHROMIUM") or "/usr/bin/chromium"
    if not os.access(path, os.X_OK):
        message = f"Chromium not found at {path} (set FATOURA_TEST_CHROMIUM)"
        if IN_CI:
            pytest.fail(message + "; browser tests are required under CI=true", pytrace=False)
        pytest.skip(message)
    return path


class _TestServer(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield  # Ctrl-C belongs to pytest, not to the server under test


@contextlib.asynccontextmanager
async def serve(app: Any, *, port: int = 0, host: str = "127.0.0.1") -> AsyncIterator[str]:
    """Run `app` under uvicorn (lifespan on) on a free loopback port; yields the base URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    port = sock.getsockname()[1]
    server = _TestServer(uvicorn.Config(app, lifespan="on", log_level="warning", timeout_graceful_shutdown=2))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        while not server.started:
            if task.done():
                task.result()
                raise RuntimeError("uvicorn stopped during startup")
            await asyncio.sleep(0.02)
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, timeout=15)
        sock.close()


@contextlib.asynccontextmanager
async def launch_chromium() -> AsyncIterator[Any]:
    """A headless Chromium (playwright.async_api.Browser)."""
    executable = chromium_executable()
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            await browser.close()


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    async with launch_chromium() as browser:
        yield browser


class ChatPage:
    """The /chat page as a customer uses it: send text, press chips, read bubbles, download files.

    `errors` collects JavaScript errors and console errors; a test can assert it stays empty.
    """

    def __init__(self, page: Any) -> None:
        self.page = page
        self.base_url = ""
        self.errors: list[str] = []
        page.on("pageerror", lambda error: self.errors.append(f"pageerror: {error}"))
        page.on("console", lambda msg: msg.type == "error" and self.errors.append(f"console: {msg.text}"))

    @classmethod
    async def open(cls, browser: Any, base_url: str, *, lang: str | None = None, locale: str | None = None,
                   viewport: dict[str, int] | None = None, timeout: float = 10_000) -> "ChatPage":
        """Open /chat in a fresh browser context (its own localStorage, so its own session)."""
        context = await browser.new_context(viewport=viewport or PHONE, locale=locale, accept_downloads=True)
        chat = cls(await context.new_page())
        chat.base_url = base_url
        await chat.page.goto(base_url + "/chat" + (f"?lang={lang}" if lang else ""))
        await chat.wait_online(timeout)
        return chat

    async def close(self) -> None:
        await self.page.context.close()

    async def wait_online(self, timeout: float = 10_000) -> None:
        await self.page.wait_for_selector('#app[data-state="online"]', timeout=timeout)

    @property
    def bot_bubbles(self) -> Any:
        return self.page.locator(".msg.bot:not(.typing) > .bubble")

    @property
    def my_bubbles(self) -> Any:
        return self.page.locator(".msg.me > .bubble")

    async def wait_for_bot(self, text: str, timeout: float = 10_000) -> Any:
        """The last bot bubble containing `text`, once it shows."""
        bubble = self.bot_bubbles.filter(has_text=text).last
        await bubble.wait_for(timeout=timeout)
        return bubble

    async def wait_idle(self, timeout: float = 10_000) -> None:
        """Until every message sent was answered (no typing dots)."""
        await self.page.wait_for_function("() => !document.querySelector('.msg.typing')", timeout=timeout)

    async def bot_texts(self) -> list[str]:
        return await self.bot_bubbles.all_inner_texts()

    async def send(self, text: str) -> None:
        await self.page.fill("#input", text)
        await self.page.press("#input", "Enter")

    async def press(self, label: str, timeout: float = 10_000) -> None:
        """Tap the last chip with this label (the newest menu)."""
        await self.page.locator(".msg.bot .chip", has_text=label).last.click(timeout=timeout)

    async def download(self, timeout: float = 10_000) -> tuple[str, bytes]:
        """Download the last file card's document: (suggested filename, bytes)."""
        link = self.page.locator(".file-download").last
        await link.wait_for(timeout=timeout)
        async with self.page.expect_download(timeout=timeout) as info:
            await link.click()
        download = await info.value
        return download.suggested_filename, Path(await download.path()).read_bytes()

    async def direction(self, locator: Any) -> str:
        return await locator.evaluate("node => getComputedStyle(node).direction")

    async def screenshot(self, name: str) -> Path:
        """Save artifacts/<name>.png (gitignored) and return its path."""
        ARTIFACTS.mkdir(exist_ok=True)
        path = ARTIFACTS / f"{name}.png"
        await self.page.screenshot(path=str(path))
        return path


@contextlib.asynccontextmanager
async def chat_in_browser(app: Any, **open_options: Any) -> AsyncIterator[ChatPage]:
    """Serve `app`, launch Chromium and open /chat: the whole stack in one `async with`."""
    async with serve(app) as base_url, launch_chromium() as browser:
        yield await ChatPage.open(browser, base_url, **open_options)

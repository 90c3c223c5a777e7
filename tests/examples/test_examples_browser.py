"""The chat page in a real browser: Debian's headless Chromium, driven by Playwright.

The server is ``python -m trio_asgi examples.chat:app`` in a subprocess, so this test is a
plain synchronous one (Playwright's sync API blocks). No browser is downloaded: Playwright
launches the system Chromium. The page sets ``<body data-state="open">`` only once its
WebSocket delivered the server's welcome, so a WebSocket that does not connect fails here.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from example_servers import ServerProcess
from playwright.sync_api import Browser, BrowserContext, Locator, Page, expect, sync_playwright

CHROMIUM = Path("/usr/bin/chromium")

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(
        not CHROMIUM.exists(),
        reason="needs Debian's Chromium at /usr/bin/chromium (apt-get install chromium)",
    ),
]

# Quiet, deterministic, offline: no GPU, no QUIC, none of the browser's own background traffic.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# Milliseconds, for every wait on the page: generous for a loaded 2-core machine, and only
# ever spent in full when something is broken.
TIMEOUT_MS = 30_000


@pytest.fixture
def browser() -> Iterator[Browser]:
    # Playwright's sync API runs an asyncio loop of its own. Once trio-asyncio is imported
    # (the --app-loop asyncio tests do), asyncio.new_event_loop() makes trio-asyncio's
    # "sync loop" unless this thread names a policy of its own.
    asyncio.set_event_loop_policy(asyncio.DefaultEventLoopPolicy())
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, timeout=TIMEOUT_MS
            )
            try:
                yield browser
            finally:
                browser.close()
    finally:
        asyncio.set_event_loop_policy(None)


def open_chat(context: BrowserContext, url: str, errors: list[str]) -> Page:
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    page.on("pageerror", lambda error: errors.append(f"page error: {error}"))
    page.on(
        "console",
        lambda message: (
            errors.append(f"console: {message.text}") if message.type == "error" else None
        ),
    )
    page.goto(url)
    expect_connected(page)
    return page


def expect_connected(page: Page) -> None:
    expect(page.locator("body")).to_have_attribute("data-state", "open", timeout=TIMEOUT_MS)
    assert page.evaluate("window.chat.state") == "open"
    expect(page.locator("#text")).to_be_enabled(timeout=TIMEOUT_MS)


def test_two_pages_chat_and_see_each_other_come_and_go(
    chat_server: ServerProcess, browser: Browser, tmp_path: Path
) -> None:
    errors: list[str] = []
    context = browser.new_context(viewport={"width": 900, "height": 600})
    room = chat_server.url + "/?room=browser&name="
    alice = open_chat(context, room + "alice", errors)
    bob = open_chat(context, room + "bob", errors)

    def presence(page: Page, text: str) -> Locator:
        return page.locator("#log li.presence", has_text=text)

    def messages(page: Page) -> Locator:
        return page.locator("#log li.message .text")

    # Presence: alice sees bob arrive, and both member lists agree.
    expect(presence(alice, "bob joined")).to_have_count(1, timeout=TIMEOUT_MS)
    for page in (alice, bob):
        expect(page.locator("#members li")).to_have_text(
            [
                "alice" + (" (you)" if page is alice else ""),
                "bob" + (" (you)" if page is bob else ""),
            ],
            timeout=TIMEOUT_MS,
        )

    # A message typed in one page appears in the other.
    bob.fill("#text", "hello from <b>bob</b> ✓")
    bob.press("#text", "Enter")
    expect(messages(alice)).to_have_text(["hello from <b>bob</b> ✓"], timeout=TIMEOUT_MS)
    expect(bob.locator("#log li.message.mine .text")).to_have_count(1, timeout=TIMEOUT_MS)
    expect(bob.locator("#text")).to_have_value("")
    assert alice.locator("#log b").count() == 0  # shown as text, never as markup

    alice.fill("#text", "hi bob")
    alice.click("#send")
    expect(messages(bob)).to_have_text(["hello from <b>bob</b> ✓", "hi bob"], timeout=TIMEOUT_MS)

    # A reload leaves and rejoins (the name comes back from the address); alice sees both.
    bob.reload()
    expect_connected(bob)
    expect(presence(alice, "bob left")).to_have_count(1, timeout=TIMEOUT_MS)
    expect(presence(alice, "bob joined")).to_have_count(2, timeout=TIMEOUT_MS)
    # The rejoined page got the room's recent history in its welcome.
    expect(messages(bob)).to_have_text(["hello from <b>bob</b> ✓", "hi bob"], timeout=TIMEOUT_MS)

    screenshot = tmp_path / "chat.png"
    alice.screenshot(path=screenshot)
    assert screenshot.stat().st_size > 1000

    # Closing a page is a departure too.
    bob.close()
    expect(presence(alice, "bob left")).to_have_count(2, timeout=TIMEOUT_MS)
    expect(alice.locator("#members li")).to_have_text(["alice (you)"], timeout=TIMEOUT_MS)
    context.close()
    assert errors == []

"""Headless Chromium, two pages: Amina asks for help in the web chat, Karim signs in to the agent
console, claims, answers, sends her invoice PDF and closes; each step shows on both pages without
a refresh. Screenshots: artifacts/agent-*.png."""
from __future__ import annotations

import pytest

from core.config import Settings
from core.services import agents as agent_service
from tests.browser import ARTIFACTS, ChatPage, launch_chromium, serve
from webhooks.app import create_app

pytestmark = pytest.mark.browser
PASSWORD = "correct horse battery"


async def test_amina_gets_help_from_karim_through_the_console(seeded_db):
    settings = Settings(_env_file=None, sandbox=True)
    app = create_app(settings, db=seeded_db)
    await agent_service.add_agent(seeded_db, "karim", PASSWORD, display_name="Karim")
    # No worker: the web process delivers the agent's replies to the pages open there itself.
    async with serve(app) as base, launch_chromium() as browser:
        amina = await ChatPage.open(browser, base, lang="fr")
        await amina.wait_for_bot("Bonjour")
        await amina.press("Lier un compte")
        await amina.press("Maroc Telecom")
        await amina.press("Mobile")
        await amina.send("06 23 36 34 44")
        await amina.wait_for_bot("Code de paiement")
        await amina.send("528605")
        await amina.wait_for_bot("2 factures impayées")
        await amina.press("Menu")
        await amina.press("Parler à un conseiller")
        await amina.wait_for_bot("pour quoi avez-vous besoin d'aide")
        await amina.send("Ma facture de février me semble trop élevée")
        await amina.wait_for_bot("numéro 1")

        context = await browser.new_context(viewport={"width": 1280, "height": 860}, locale="fr-FR")
        console = await context.new_page()
        errors: list[str] = []
        console.on("pageerror", lambda error: errors.append(str(error)))
        await console.goto(base + "/agents")
        await console.fill("input[name=username]", "karim")
        await console.fill("input[name=password]", PASSWORD)
        await console.click("button[type=submit]")
        queue = console.locator("#queue li.ticket")
        await queue.filter(has_text="Ma facture de février").wait_for()
        assert "attend depuis" in await queue.first.inner_text()

        await console.click("#queue li.ticket button:has-text('Prendre')")
        await console.wait_for_selector("text=Tenue par vous")
        await amina.wait_for_bot("Karim a rejoint la conversation")

        await console.fill("form.reply:not(.note) textarea", "Bonjour Amina, je regarde votre facture de février.")
        await console.click("form.reply:not(.note) button")
        await amina.wait_for_bot("Karim: Bonjour Amina, je regarde votre facture de février.")
        await console.fill("form.note textarea", "Cliente polie ; vérifier la ligne TVA")
        await console.click("form.note button")
        await console.wait_for_selector("text=Note ajoutée")

        # Amina answers; the console shows it by itself (Server-Sent Events, no reload).
        await amina.send("Merci ! Pouvez-vous m'envoyer la facture ?")
        await console.locator("#transcript").filter(has_text="Pouvez-vous m'envoyer la facture").wait_for(timeout=10_000)

        row = console.locator("table.invoices tr", has_text="0000528605022017")
        await row.locator("button:has-text('Envoyer le PDF')").click()
        await amina.wait_for_bot("vous a envoyé une facture : 0000528605022017")
        filename, content = await amina.download()
        assert filename == "facture-0000528605022017.pdf" and content.startswith(b"%PDF")
        assert "Cliente polie" not in "\n".join(await amina.bot_texts())  # the internal note stays agent-side

        ARTIFACTS.mkdir(exist_ok=True)
        await console.screenshot(path=str(ARTIFACTS / "agent-console-fr.png"))
        await amina.screenshot("agent-customer-fr")

        await console.click("button:has-text('Clôturer la conversation')")
        await console.wait_for_selector("text=Clôturée")
        await amina.wait_for_bot("Comment noteriez-vous l'aide reçue")
        await amina.press("★★★★★")
        await amina.wait_for_bot("Merci pour votre note")
        await amina.send("bonjour")  # the bot has the chat back
        await amina.wait_for_bot("pas compris")
        await amina.screenshot("agent-customer-closed-fr")

        await console.select_option("select[name=lang]", "ar")
        await console.wait_for_selector("html[dir=rtl]")
        await console.goto(base + "/agents?ticket=1")
        assert "بعهدة" not in await console.inner_text("body")  # closed: held by nobody
        await console.screenshot(path=str(ARTIFACTS / "agent-console-ar.png"))
        assert not errors and not amina.errors, errors + amina.errors

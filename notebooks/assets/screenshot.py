"""The README's screenshot: `difflab app` on the shapes model, generating in a real browser (Debian's chromium
through Playwright), with results/ as the results folder so that no temporary path is on screen.

    .venv/bin/python notebooks/assets/screenshot.py        # from the checkout's root; writes notebooks/assets/app.png
"""

import socket
from pathlib import Path

from playwright.sync_api import expect, sync_playwright

from difflab.app import launch

PROMPTS = ["a red circle to the left of a blue square", "two yellow triangles", "a green square at the top right",
           "a purple circle on a white background"]

with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
page = launch("shapes", port=port, results=Path("results"), block=False)
with sync_playwright() as p:
    browser = p.chromium.launch(executable_path="/usr/bin/chromium", headless=True,
                                args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"])
    tab = browser.new_page(viewport={"width": 1400, "height": 1000})
    tab.goto(f"http://127.0.0.1:{port}/")
    tab.locator("#text2img-prompt textarea").fill("\n".join(PROMPTS))
    tab.get_by_label("Seed (-1: random)").fill("1")
    tab.locator("#text2img-generate").click()
    expect(tab.locator("#text2img-status")).to_contain_text(f"Done: {len(PROMPTS)} image", timeout=300_000)
    expect(tab.locator("#text2img-gallery img").first).to_be_visible(timeout=30_000)
    tab.screenshot(path=str(Path(__file__).with_name("app.png")), full_page=True)
    browser.close()
page.close()

"""The audit's HTML report in headless Chromium (Debian's /usr/bin/chromium, driven by Playwright): Chart.js is
inlined (no network), every chart is drawn with data, and the console stays free of errors."""

from __future__ import annotations

import io
import os

import pytest
from click.testing import CliRunner

from scrimp.cli import main

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]

pytestmark = pytest.mark.skipif(not os.path.exists(CHROMIUM),
                                reason=f"Debian's chromium is not installed ({CHROMIUM}): apt-get install -y chromium")


def _coloured(png: bytes) -> int:
    from PIL import Image

    img = Image.open(io.BytesIO(png)).convert("RGB")
    return sum(1 for r, g, b in img.get_flattened_data() if max(r, g, b) - min(r, g, b) > 40)


def test_every_chart_is_drawn_offline(week, tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api")
    args, _made = week
    out = tmp_path / "audit.html"
    result = CliRunner().invoke(main, ["audit", "--since", "8d", "--html", str(out), *args])
    assert result.exit_code == 0, result.output
    html = out.read_text()
    assert "http://" not in html.split("<script>")[0] and "src=" not in html  # nothing fetched: all inline
    errors: list[str] = []
    requests: list[str] = []
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        page = browser.new_page(viewport={"width": 1200, "height": 1000})
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on("request", lambda r: requests.append(r.url))
        page.goto(out.as_uri())
        canvases = page.locator("canvas")
        ids = [canvases.nth(i).get_attribute("id") for i in range(canvases.count())]
        assert ids == ["chart-spend", "chart-savings", "chart-cache", "chart-trend", "chart-prompts"]
        for chart in ids:
            shot = page.locator(f"#{chart}").screenshot()
            assert _coloured(shot) > 5000, chart  # bars or lines drawn: a legend alone is ~1,000 pixels
        browser.close()
    assert errors == [] and requests == [out.as_uri()]

"""The dashboard in headless Chromium (Debian's /usr/bin/chromium, driven by Playwright; no browser download):
every chart is drawn with data (its canvas in a screenshot has coloured pixels), a filter changes what is
drawn, a click lists the calls behind a chart, the top prompts by spend (request log on for one feature) are
listed with a link to their calls, and the console stays free of errors. Also with `auth:`: the page loads
without a key, its data only with the admin key; without a request log the page says which features to log."""

from __future__ import annotations

import io
import os

import httpx
import pytest

from scrimp.auth import AuthOptions
from scrimp.gateway.app import create_app
from scrimp.gateway.config import simulated
from scrimp.options import Where, parse_options
from scrimp.sim.testing import run_simulator, serve_app
from tests.dashboard.traffic import write_traffic

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]
CHARTS = ["spend", "breakdown", "levers", "features", "cache", "routing", "shadow", "budgets", "errors", "latency"]
ADMIN = "admin-" + "x" * 32

pytestmark = pytest.mark.skipif(not os.path.exists(CHROMIUM),
                                reason=f"Debian's chromium is not installed ({CHROMIUM}): apt-get install -y chromium")


@pytest.fixture(scope="module")
def sim():
    with run_simulator() as (url, _app):
        yield url


def gateway(sim_url: str, tmp_path, auth: bool = False, log: list[str] | None = None):
    config = simulated(sim_url, stages=[{"name": "ledger", "path": str(tmp_path / "ledger.db")},
                                        *([{"name": "request_log", "features": log}] if log else []),
                                        {"name": "exact_cache", "backend": "sqlite", "path": str(tmp_path / "c.db")}])
    if auth:  # required keys and an admin key: the API needs it, the page does not
        config.auth = parse_options(AuthOptions, {"required": True, "admin_key": ADMIN}, Where(path="auth"))
    return create_app(config)


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        yield b
        b.close()


def coloured_pixels(png: bytes) -> int:
    """Pixels of a chart's screenshot that are neither white nor grey (axes, grid and text are grey)."""
    from PIL import Image

    img = Image.open(io.BytesIO(png)).convert("RGB")
    return sum(1 for r, g, b in img.get_flattened_data() if max(r, g, b) - min(r, g, b) > 40)


def open_page(browser, url: str, errors: list[str]):
    page = browser.new_page(viewport={"width": 1400, "height": 2000})
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(url)
    page.wait_for_function("document.body.dataset.loads >= 1", timeout=20000)
    return page


def loads(page) -> int:
    return int(page.evaluate("document.body.dataset.loads"))


def test_every_chart_drawn_filters_change_it_and_calls_are_listed(sim, tmp_path, browser):
    import openai

    app = gateway(sim, tmp_path, log=["live"])
    with serve_app(app) as url:
        store = app.state.gateway.ledger
        write_traffic(store, 1200, seed=5, days=6)
        client = openai.OpenAI(base_url=url + "/v1", api_key="sk-test",
                               default_headers={"x-scrimp-tenant": "acme", "x-scrimp-feature": "live"})
        for _ in range(2):  # the second is an exact-cache hit
            client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi there"}])
        for n in (4411, 97, 123456):  # one template, three prompts, all logged
            client.chat.completions.create(model="gpt-4o", messages=[
                {"role": "user", "content": f"Summarise ticket {n}: the printer on floor 3 is jammed again"}])
        next(s for s in app.state.gateway.stages if s.name == "request_log").flush()
        store.flush()
        ticket_usd = store.query("SELECT SUM(cost_usd) FROM calls WHERE requested_model = 'gpt-4o' "
                                 "AND feature = 'live'")[0][0]

        errors: list[str] = []
        page = open_page(browser, url + "/dashboard?since=7d", errors)
        before = {}
        for name in CHARTS:
            panel = page.locator(f"#p-{name}")
            assert "nodata" not in (panel.get_attribute("class") or ""), name
            before[name] = coloured_pixels(page.locator(f"#chart-{name}").screenshot())
            assert before[name] > 200, f"chart {name} looks empty ({before[name]} coloured pixels)"
        total = page.locator("#cards .card b").nth(2).inner_text()
        assert int(total.replace(",", "")) == 1205  # 1200 written + the five calls through the gateway

        # top prompts by spend: the logged feature's templates, the unlogged features named
        prompt_rows = page.eval_on_selector_all("#prompts-rows tr", "rs => rs.map(r => [...r.cells].map(c => c.innerText))")
        assert [r[:3] for r in prompt_rows] == [["live", "Summarise ticket <n>: the printer on floor <n> is jammed again",
                                                 "3"], ["live", "hi there", "2"]]
        assert prompt_rows[0][3] == f"${ticket_usd:.3g}" and prompt_rows[0][5] == "calls"
        note = page.locator("#prompts-note").inner_text()
        assert "not logged: " in note and "support" in note and page.locator("#prompts-hint").is_hidden()

        # a filter: one tenant -> fewer calls, redrawn
        n = loads(page)
        page.select_option("#f-tenant", "globex")
        page.wait_for_function(f"document.body.dataset.loads > {n}")
        globex = int(page.locator("#cards .card b").nth(2).inner_text().replace(",", ""))
        assert 0 < globex < 1202
        after = coloured_pixels(page.locator("#chart-features").screenshot())
        assert after > 200 and after != before["features"]

        # the calls behind a bar: top feature of globex, all of them globex's and that feature's
        bar = page.evaluate("(() => { const b = charts['chart-features'].getDatasetMeta(0).data[0];"
                            " return {x: (b.x + b.base) / 2, y: b.y}; })()")  # the middle of the first bar
        page.locator("#chart-features").click(position=bar)
        page.wait_for_function("document.querySelectorAll('#calls-rows tr').length > 0", timeout=10000)
        rows = page.locator("#calls-rows tr")
        assert rows.count() == 50 and page.locator("#calls-more").is_visible()
        feature = rows.nth(0).locator("td").nth(3).inner_text()
        cells = page.eval_on_selector_all("#calls-rows tr", "rs => rs.map(r => [r.cells[2].innerText, r.cells[3].innerText])")
        assert {c[0] for c in cells} == {"globex"} and {c[1] for c in cells} == {feature}
        page.locator("#calls-more").click()
        page.wait_for_function("document.querySelectorAll('#calls-rows tr').length > 50", timeout=10000)
        ids = page.eval_on_selector_all("#calls-rows tr", "rs => rs.map(r => r.cells[1].innerText)")
        assert len(ids) == len(set(ids))  # keyset pages never repeat a call
        assert page.locator("#prompts-table").is_hidden()  # globex has no logged call: the hint says what to log
        assert "No logged call in this view. Turn on the request log for these features: " in \
            page.locator("#prompts-hint").inner_text()

        # back to every tenant: the calls behind the top template, from its link
        n = loads(page)
        page.select_option("#f-tenant", "")
        page.wait_for_function(f"document.body.dataset.loads > {n}")
        page.locator("#prompts-rows tr").nth(0).locator("a").click()
        page.wait_for_function("document.getElementById('calls-what').textContent.includes('Summarise')")
        page.wait_for_function("document.querySelectorAll('#calls-rows tr').length === 3", timeout=10000)
        cells = page.eval_on_selector_all("#calls-rows tr", "rs => rs.map(r => [r.cells[3].innerText, r.cells[4].innerText])")
        assert cells == [["live", "gpt-4o"]] * 3 and page.locator("#calls-more").is_hidden()
        assert errors == []
        if os.environ.get("SCRIMP_DASHBOARD_SCREENSHOT"):  # docs/img/dashboard.png
            page.select_option("#f-tenant", "")
            page.wait_for_timeout(500)
            page.set_viewport_size({"width": 1400, "height": 1150})
            page.evaluate("window.scrollTo(0, 0)")
            page.screenshot(path=os.environ["SCRIMP_DASHBOARD_SCREENSHOT"])
        page.close()


def test_with_auth_the_page_loads_and_its_data_needs_the_admin_key(sim, tmp_path, browser):
    app = gateway(sim, tmp_path, auth=True)
    with serve_app(app) as url:
        write_traffic(app.state.gateway.ledger, 50, seed=9, days=1)
        app.state.gateway.ledger.flush()
        assert httpx.get(url + "/dashboard").status_code == 200  # the shell holds no data
        assert httpx.get(url + "/dashboard/api/overview").status_code == 401
        assert httpx.get(url + "/dashboard/api/calls", headers={"authorization": "Bearer nope"}).status_code == 401
        ok = httpx.get(url + "/dashboard/api/overview?since=2d", headers={"authorization": f"Bearer {ADMIN}"})
        assert ok.status_code == 200 and ok.json()["totals"]["calls"] == 50

        errors: list[str] = []
        page = open_page(browser, url + f"/dashboard?since=2d#key={ADMIN}", errors)
        assert page.locator("#cards .card b").nth(2).inner_text() == "50"
        hint = page.locator("#prompts-hint").inner_text()  # no request log: which features to log, by spend
        assert hint.startswith("The request log is off. Turn on the request log for these features: ") and "support" in hint
        assert page.locator("#prompts-table").is_hidden()
        assert "key=" not in page.url  # the key left the address bar
        assert errors == []
        page.close()
        page = browser.new_page()  # a tab without the key is asked for it
        page.goto(url + "/dashboard")
        page.wait_for_selector("#keyform", state="visible", timeout=10000)
        page.fill("#key", ADMIN)
        page.click("#keyform button")
        page.wait_for_function("document.body.dataset.loads >= 1", timeout=10000)
        page.close()

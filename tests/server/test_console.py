"""The web console end to end: a real server on the MovieLens-100K demo, driven over HTTP and in
Debian's Chromium through Playwright. Each page's screenshot is written under
`tests/artifacts/console/` (or `$REQO_CONSOLE_SCREENSHOTS`); the README shows them."""

from __future__ import annotations

import io
import os
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from PIL import Image
from playwright.sync_api import Browser, Page, expect, sync_playwright
from recombee_api_client.api_requests import AddDetailView, RecommendItemsToUser

from server.cli.main import main
from tests.serving import REPO_ROOT, RunningServer, free_port

ADMIN = "console-admin-token-0123456789"
TOKEN = "demo-private-token"
CHROMIUM = Path("/usr/bin/chromium")
# As the machine's notes say: no sandbox as root, and none of Chromium's own network calls.
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOTS = Path(
    os.environ.get("REQO_CONSOLE_SCREENSHOTS", REPO_ROOT / "tests/artifacts/console")
)
SIGNED_RECOMMENDATIONS = 12
CONFIG: dict[str, Any] = {
    "models": {"ease": {"algorithm": "ease"}},
    "scenarios": {
        "homepage": {"endpoint": "items-to-user", "model": "ease"},
        "discover": {
            "endpoint": "items-to-user",
            "variants": [
                {"name": "ease", "model": "ease"},
                {"name": "popular", "model": "popularity"},
            ],
        },
        "related": {"endpoint": "items-to-item", "model": "item-knn"},
    },
}


def _cli(*args: str) -> None:
    assert main(list(args)) == 0, f"reqo {' '.join(args)} failed"


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """`make serve`'s demo with an admin token: MovieLens-100K, the models trained (ease twice,
    so that it has a version to roll back to), an evaluation on record, and some traffic."""
    directory = tmp_path_factory.mktemp("console")
    server = RunningServer(
        directory,
        free_port(),
        {"demo": TOKEN},
        admin_token=ADMIN,
        extra=CONFIG,
        server_settings={"metrics": {"history_interval": "1s"}},
    )
    server.write_config()
    config = str(server.config_path)
    _cli("dataset", "load", "ml-100k", "--config", config, "--db", "demo", "--no-progress")
    _cli("train", "--config", config, "--db", "demo")
    _cli("train", "--config", config, "--db", "demo", "--model", "ease")
    _cli("evaluate", "--config", config, "--db", "demo", "--models", "popularity", "--no-progress")
    server.start()
    client = server.client("demo")
    for user in range(1, SIGNED_RECOMMENDATIONS + 1):
        scenario = "homepage" if user % 2 else "discover"
        answer = client.send(RecommendItemsToUser(str(user), 5, scenario=scenario))
        if user % 3 == 0:
            item = answer["recomms"][0]["id"]
            client.send(AddDetailView(str(user), item, recomm_id=answer["recommId"]))
    try:
        yield server
    finally:
        server.stop()


def _bearer(server: RunningServer, path: str) -> requests.Response:
    headers = {"Authorization": f"Bearer {ADMIN}"}
    return requests.get(f"{server.url}{path}", headers=headers, timeout=30)


def _logged_in(server: RunningServer) -> requests.Session:
    session = requests.Session()
    answer = session.post(
        f"{server.url}/-/console/login", data={"token": ADMIN}, allow_redirects=False, timeout=30
    )
    assert answer.status_code == 303
    return session


def test_no_page_or_data_without_the_admin_token(demo: RunningServer) -> None:
    url = demo.url
    page = requests.get(f"{url}/-/console/", allow_redirects=False, timeout=30)
    assert page.status_code == 303
    assert page.headers["location"] == "/-/console/login"
    for path in ("/-/console/static/console.js", "/-/console/api/overview"):
        assert requests.get(f"{url}{path}", timeout=30).status_code == 401
    assert requests.get(f"{url}/-/console/api/demo/models", timeout=30).status_code == 401
    wrong = requests.post(f"{url}/-/console/login", data={"token": "guess"}, timeout=30)
    assert wrong.status_code == 401
    assert "That is not this server" in wrong.text

    answer = requests.post(
        f"{url}/-/console/login", data={"token": ADMIN}, allow_redirects=False, timeout=30
    )
    assert answer.status_code == 303
    cookie = answer.headers["set-cookie"]
    assert "HttpOnly" in cookie
    assert "SameSite=Strict" in cookie
    assert ADMIN not in cookie  # the session, never the token
    session = _logged_in(demo)
    console = session.get(f"{url}/-/console/", timeout=30)
    assert console.status_code == 200
    # No other site may frame it (a click on its rollback), nor run script in it.
    assert "frame-ancestors 'none'" in console.headers["content-security-policy"]
    assert "script-src" not in console.headers["content-security-policy"]  # default: 'self'
    assert console.headers["x-frame-options"] == "DENY"
    # The JSON and the database's API want the console's header too (no cross-site riding).
    assert session.get(f"{url}/-/console/api/overview", timeout=30).status_code == 401
    assert session.get(f"{url}/demo/items/list/?count=1", timeout=30).status_code == 401
    header = {"X-Reqo-Console": "1"}
    assert session.get(f"{url}/-/console/api/overview", headers=header, timeout=30).ok
    listed = session.get(f"{url}/demo/items/list/?count=2", headers=header, timeout=30)
    assert listed.json() == ["1", "10"]
    # A forged cookie opens nothing; the bearer token still does.
    forged = requests.Session()
    forged.cookies.set("reqo_console", "9999999999.00.00")
    assert (
        forged.get(f"{url}/-/console/api/overview", headers=header, timeout=30).status_code == 401
    )
    assert _bearer(demo, "/-/console/api/overview").ok
    # Logging out ends the session in the browser.
    out = session.post(f"{url}/-/console/logout", allow_redirects=False, timeout=30)
    assert "Max-Age=0" in out.headers["set-cookie"]
    assert session.get(f"{url}/-/console/", allow_redirects=False, timeout=30).status_code == 303


def test_without_an_admin_token_only_a_development_server_opens_the_console(
    tmp_path: Path,
) -> None:
    for allow_unsigned in (True, False):
        server = RunningServer(
            tmp_path / str(allow_unsigned),
            free_port(),
            {"demo": TOKEN},
            allow_unsigned=allow_unsigned,
        )
        server.directory.mkdir()
        # A map as `reqo plot embeddings` leaves it by default (drawn here: no visual model).
        maps = server.directory / "data" / "maps" / "demo"
        maps.mkdir(parents=True)
        Image.new("RGB", (40, 30), "teal").save(maps / "visual-category.png")
        server.start()
        try:
            picture = requests.get(
                f"{server.url}/-/console/api/demo/maps/visual-category.png", timeout=30
            )
            listed = requests.get(
                f"{server.url}/-/console/api/demo/models",
                headers={"X-Reqo-Console": "1"},
                timeout=30,
            )
            page = requests.get(f"{server.url}/-/console/", allow_redirects=False, timeout=30)
            overview = requests.get(
                f"{server.url}/-/console/api/overview", headers={"X-Reqo-Console": "1"}, timeout=30
            )
            login = requests.get(f"{server.url}/-/console/login", allow_redirects=False, timeout=30)
        finally:
            server.stop()
        if allow_unsigned:  # loopback development: open, as every admin operation there
            assert page.status_code == 200
            assert overview.json()["databases"][0]["name"] == "demo"
            assert picture.headers["content-type"] == "image/png"
            assert Image.open(io.BytesIO(picture.content)).size == (40, 30)
            assert [m["file"] for m in listed.json()["maps"]] == ["visual-category.png"]
            assert login.status_code == 303
        else:
            assert page.status_code == 303
            assert overview.status_code == 401
            assert picture.status_code == 401
            assert listed.status_code == 401
            assert login.status_code == 401
            assert "no admin_token configured" in login.text


def test_previews_are_not_logged_and_the_kpis_count_only_real_traffic(
    demo: RunningServer,
) -> None:
    session = _logged_in(demo)
    header = {"X-Reqo-Console": "1"}
    for user in range(100, 105):
        path = f"/demo/recomms/users/{user}/items/?count=3&scenario=homepage"
        assert session.get(f"{demo.url}{path}", headers=header, timeout=30).ok
    expected = (SIGNED_RECOMMENDATIONS + 1) // 2  # the odd users were on the homepage

    def homepage() -> dict[str, Any]:
        found = _bearer(demo, "/-/console/api/demo/scenarios?bucket=minute").json()
        entry = next(s for s in found["scenarios"] if s["name"] == "homepage")
        totals: dict[str, Any] = entry["variants"][0]["totals"] or {}
        return totals

    deadline = time.monotonic() + 20
    while homepage().get("recommendations", 0) < expected and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(1.5)  # the previews' records would have arrived by now
    totals = homepage()
    assert totals["recommendations"] == expected
    assert totals["clicks"] == 2  # users 3 and 9 clicked their homepage recommendations


@pytest.mark.parametrize(
    ("path", "status", "named"),
    [
        ("/-/console/api/demo/users/not%20an%20id", 400, "userId"),
        ("/-/console/api/demo/users/nobody", 404, "nobody"),
        ("/-/console/api/demo/items/nothing/neighbours", 404, "nothing"),
        ("/-/console/api/nope/models", 404, "nope"),
        ("/-/console/api/demo/scenarios?bucket=week", 400, "bucket"),
        ("/-/console/api/demo/reql", 400, "expression"),
        ("/-/console/api/demo/reql?expression=1&purpose=sort", 400, "purpose"),
        ("/-/console/api/demo/reql?expression=1&endpoint=nowhere", 400, "endpoint"),
        ("/-/console/api/demo/find?entity=things", 400, "entity"),
        ("/-/console/api/demo/find?entity=users&q='age' >", 400, "ReQL"),
        ("/-/console/api/demo/find?entity=users&q='aeg' > 3", 400, "aeg"),
        ("/-/console/api/demo/items/1/neighbours?count=0", 400, "count"),
        ("/-/console/api/demo/items/1/neighbours?count=1000", 400, "count"),
        ("/-/console/api/demo/items/1/neighbours?count=many", 400, "count"),
        ("/-/console/api/demo/maps/..%2F..%2Fdemo.duckdb", 404, "map"),
        ("/-/console/api/demo/maps/.hidden.png", 404, "map"),
        ("/-/console/api/demo/maps/none.png", 404, "map"),
    ],
)
def test_bad_console_requests_are_4xx_naming_the_problem(
    demo: RunningServer, path: str, status: int, named: str
) -> None:
    answer = _bearer(demo, path)
    assert answer.status_code == status, answer.text
    assert named in answer.json()["error"]


def test_hostile_text_is_data_to_the_console(demo: RunningServer) -> None:
    # LIKE's wildcards match themselves; a huge expression is refused by ReQL's limits.
    found = _bearer(demo, "/-/console/api/demo/find?entity=users&q=%25_").json()
    assert found == {"by": "id", "found": []}
    prefix = _bearer(demo, "/-/console/api/demo/find?entity=users&q=94").json()
    assert [u["userId"] for u in prefix["found"]] == ["94", "940", "941", "942", "943"]
    huge = "'release_year' > 1 and " * 500 + "true"  # over ReQL's 10,000 characters
    checked = _bearer(demo, f"/-/console/api/demo/reql?expression={huge}").json()
    assert checked["ok"] is False
    assert checked["kind"] == "limit"
    quoted = _bearer(demo, "/-/console/api/demo/reql?expression='title' == \"'); DROP\"").json()
    assert quoted == {"ok": True}


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    assert CHROMIUM.exists(), "Debian's chromium is missing: `make install` installs it with apt"
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_FLAGS)
        try:
            yield launched
        finally:
            launched.close()


def _shot(page: Page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def _open(page: Page, demo: RunningServer, route: str) -> None:
    page.goto(f"{demo.url}/-/console/#/{route}")
    expect(page.locator("body")).to_have_attribute("data-loaded", route.split("?")[0].split("/")[0])


def test_the_console_in_a_browser(demo: RunningServer, browser: Browser) -> None:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))

    # Log in: the console sends one to its login page, and a wrong token is refused there.
    page.goto(f"{demo.url}/-/console/")
    expect(page).to_have_url(re.compile(r"/-/console/login$"))
    page.fill("#token", "not-the-token")
    page.click("button[type=submit]")
    expect(page.locator(".problem")).to_contain_text("not this server's admin token")
    _shot(page, "login")
    page.fill("#token", ADMIN)
    page.click("button[type=submit]")

    # Overview: the demo's counts, the traffic charts and the models.
    expect(page.locator("body")).to_have_attribute("data-loaded", "overview")
    expect(page.locator("#readiness")).to_have_text("ready")
    figures = page.locator(".figure b").all_inner_texts()
    clicks = SIGNED_RECOMMENDATIONS // 3  # the fixture's detail views
    assert figures[:3] == ["1,682", "943", f"{100_000 + clicks:,}"]
    expect(page.locator("figure.chart svg path").first).to_be_visible()  # traffic drawn
    expect(page.locator("table")).to_contain_text("ease")
    _shot(page, "overview")

    # Scenarios: KPI charts per variant, the bandit's shares, the YAML.
    page.click("#nav a[data-page=scenarios]")
    expect(page.locator("body")).to_have_attribute("data-loaded", "scenarios")
    discover = page.locator("section.card", has=page.locator("h2", has_text="discover"))
    expect(discover.locator(".bar-row")).to_have_count(2)
    expect(discover.locator("dl.settings")).to_contain_text("minRelevance")  # defaults shown
    expect(discover.locator("figure.chart svg").first).to_be_visible()
    discover.locator("summary").click()
    expect(discover.locator("pre.yaml")).to_contain_text("model: popularity")
    _shot(page, "scenarios")

    # Preview under a filter: every card shows a film after 1990.
    _open(page, demo, "preview?user=1&a=homepage&show=title,release_year")
    page.locator("#pane-1 textarea").first.fill("'release_year' > 1990")
    page.click("#show")
    cards = page.locator("#pane-1 .item-card")
    expect(cards).to_have_count(10)
    years = [int(text.split("\n")[2]) for text in cards.all_inner_texts()]
    assert min(years) > 1990
    expect(page.locator(".history .timeline li").first).to_be_visible()  # the user's history

    # A ReQL mistake shows the server's report with its caret under the mistake as one types.
    expression = "'release_year' > 1990 and 'titel' == \"x\""
    page.locator("#pane-1 textarea").first.fill(expression)
    report = page.locator("#pane-1 pre.reql-error").first
    expect(report).to_contain_text("unknown property 'titel'")
    lines = report.inner_text().split("\n")
    assert lines[-2] == expression
    assert lines[-1].index("^") == expression.index("'titel'")
    _shot(page, "preview-reql-error")

    # Two scenarios side by side.
    page.locator("#pane-1 textarea").first.fill("")
    page.check("#compare")
    page.select_option("#pane-2 select", "discover")
    page.click("#show")
    expect(page.locator("#pane-1 .item-card")).to_have_count(10)
    expect(page.locator("#pane-2 .item-card")).to_have_count(10)
    _shot(page, "preview")

    # Data: items under a ReQL filter, paged; an item with its neighbours; a user.
    _open(page, demo, "data?entity=items&filter='release_year' < 1940")
    rows = page.locator("table.listing tbody tr")
    expect(rows).to_have_count(20)
    page.click("text=next →")
    expect(page).to_have_url(re.compile(r"offset=20"))
    expect(rows.first).to_be_visible()
    for text in rows.all_inner_texts():
        assert int(text.split("\t")[2]) < 1940
    _shot(page, "data")
    rows.first.locator("a").click()
    expect(page.locator("body")).to_have_attribute("data-loaded", "data")
    expect(page.locator("#neighbours .model-row").first).to_be_visible()
    assert page.locator("#neighbours .model-row").count() >= 3  # one per configured model
    _shot(page, "item")
    _open(page, demo, "data/user/1")
    expect(page.locator("#user-scenarios .model-row .item-card").first).to_be_visible()
    _shot(page, "user")

    # Models: roll ease back to its older version, after a confirmation.
    versions = _bearer(demo, "/-/console/api/demo/models").json()
    ease = next(m for m in versions["models"] if m["model"] == "ease")
    newer, older = ease["versions"][0]["version"], ease["versions"][1]["version"]
    assert ease["serving"] == newer
    assert ease["versions"][0]["training"]["interactions"] == 100_000
    _open(page, demo, "models")
    serving = page.locator("code.serving[data-model=ease]")
    expect(serving).to_have_text(newer)
    # The fixture's `reqo evaluate` record, from its default place.
    evaluation = page.locator("section.card", has=page.locator("h2", has_text="· random"))
    expect(evaluation).to_contain_text("ndcg@10")
    expect(evaluation).to_contain_text("popularity")
    page.click(f"button[data-rollback='{older}']")
    page.click("#confirm-ok")
    expect(serving).to_have_text(older)
    models = demo.request("GET", "/-/models", database="demo").json()
    assert next(m for m in models if m["model"] == "ease")["serving"] == older
    _shot(page, "models")

    # A phone-sized screen: the overview fits its width.
    phone = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True)
    phone.add_cookies(
        [
            {"name": c["name"], "value": c["value"], "url": demo.url}
            for c in context.cookies()
            if "name" in c and "value" in c
        ]
    )
    small = phone.new_page()
    _open(small, demo, "overview")
    width = small.evaluate("document.documentElement.scrollWidth")
    assert width <= 390
    _shot(small, "overview-phone")
    phone.close()
    context.close()
    assert errors == []

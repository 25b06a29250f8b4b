"""The Headwater page in the Airflow UI, in a real headless Chromium: it needs a login, it is in
the nav bar, and it shows the figures its JSON API reports: each source's last reconciled window
(from a real ingest DAG run), lag per partition (the running consumers' heartbeats) and the health
checks' latest results and failures."""

from __future__ import annotations

import importlib
import json
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from types import ModuleType
from typing import Any

import pytest
import requests
from playwright.sync_api import FrameLocator, Page, expect, sync_playwright
from pymongo import MongoClient, monitoring
from pymongo.database import Database

from headwater.clients import mongo_client
from headwater.contracts import Collections
from headwater.health_checks import CHECK_HEALTHZ, CHECK_LAG, health_result
from headwater.reconcile_log import reconcile_id
from headwater.settings import REPO_ROOT, Settings
from headwater.sources import load_sources
from infra import stack
from infra.airflow import airflow_token
from producer.simulator import malformed_kind, readings
from tests.integration.test_airflow_ui import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS

SINCE = datetime(2025, 7, 14, 10, 0, tzinfo=UTC)
UNTIL = SINCE + timedelta(minutes=2)
SHOT = ARTIFACTS / "headwater_page.png"

_DAG_TEST = """
import json, sys
from airflow.dag_processing.dagbag import DagBag
dag = DagBag(dag_folder="dags").get_dag(sys.argv[1])
run = dag.test(run_conf={"since": sys.argv[2], "until": sys.argv[3]})
print(json.dumps({"state": str(run.state), "run_id": run.run_id}))
"""


def _run_ingest(settings: Settings, dag_id: str, since: datetime, until: datetime) -> dict:
    """One ingest DAG run for [since, until) in-process under Airflow: pull, produce, reconcile."""
    result = subprocess.run(
        [sys.executable, "-c", _DAG_TEST, dag_id, since.isoformat(), until.isoformat()],
        cwd=REPO_ROOT,
        env=stack.stack_env(settings),
        capture_output=True,
        text=True,
        timeout=400,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.fixture
def db(live_stack: Settings) -> Iterator[Database]:
    with mongo_client(live_stack) as client:
        yield client[live_stack.mongo.db]


@pytest.fixture
def health_run(db: Database, probes: ModuleType) -> Iterator[str]:
    """Known health_checks documents under a run id of this test's own, removed afterwards: a
    consumer_lag check failing now, and a service_healthz check that failed and then recovered."""
    run_id = f"headwater-page-{uuid.uuid4().hex[:8]}"
    now = datetime.now(UTC).replace(microsecond=0)
    lag_failure = health_result(CHECK_LAG, False, f"{run_id}: devices lag 2345 > 1000", {})
    healthz_failure = health_result(CHECK_HEALTHZ, False, f"{run_id}: events-api refused", {})
    healthz_pass = health_result(CHECK_HEALTHZ, True, f"{run_id}: healthy again", {})
    probes.record_result(db, healthz_failure, run_id=run_id, try_number=1, now=now)
    probes.record_result(db, healthz_pass, run_id=run_id, try_number=1, now=now)
    probes.record_result(db, lag_failure, run_id=run_id, try_number=1, now=now)
    yield run_id
    db[Collections.HEALTH_CHECKS].delete_many({"dag_run_id": run_id})


def _shown(value: Any) -> str:
    """How the page writes a figure."""
    return "—" if value is None else str(value)


def _login(page: Page, settings: Settings) -> None:
    a = settings.airflow
    page.fill("input[name=username]", a.user)
    page.fill("input[name=password]", a.password.get_secret_value())
    page.click("button[type=submit]")


def _check_page_against(frame: FrameLocator, summary: dict[str, Any]) -> None:
    """Every source's row, every reported partition's lag and every check's result on the page
    are the ones in the JSON summary."""
    for source in summary["sources"]:
        row = frame.locator(f'tr[data-source="{source["name"]}"]')
        last = source["last_reconcile"] or {}
        for field in ("pulled", "produced", "stored", "rejected"):
            expect(row.locator(f'[data-field="{field}"]')).to_have_text(_shown(last.get(field)))
        expect(row.locator('[data-field="lag_total"]')).to_have_text(_shown(source["lag"]["total"]))
        for part in source["lag"]["partitions"]:
            cells = frame.locator(
                f'tr[data-lag-source="{source["name"]}"][data-partition="{part["partition"]}"]'
            )
            expect(cells.locator('[data-field="lag"]')).to_have_text(_shown(part["lag"]))
            expect(cells.locator('[data-field="committed"]')).to_have_text(
                _shown(part["committed"])
            )
    for check in summary["health"]:
        row = frame.locator(f'tr[data-check="{check["check"]}"]')
        latest = check["latest"]
        status = "never ran" if latest is None else ("ok" if latest["ok"] else "failing")
        expect(row.locator('[data-field="status"]')).to_have_text(status)
        if latest is not None:
            expect(row.locator('[data-field="detail"]')).to_have_text(_shown(latest["detail"]))
        expect(row.locator('[data-field="failure"]')).to_have_count(len(check["failures"]))


@pytest.mark.timeout(900)
def test_the_headwater_page_needs_a_login_and_shows_the_figures_its_api_reports(
    live_stack: Settings, db: Database, health_run: str
) -> None:
    settings = live_stack
    a = settings.airflow
    api = f"{a.base_url}/headwater/api/summary"

    # Real data: an ingest DAG run for a past window, reconciled and recorded by its own task.
    run = _run_ingest(settings, "ingest_devices", SINCE, UNTIL)
    assert run["state"].endswith("success"), run
    offered = list(readings(SINCE, UNTIL, settings.services.simulator_devices))
    valid = sum(1 for r in offered if malformed_kind(r["device_id"], r["ts"]) is None)
    recorded = db[Collections.RECONCILE_RUNS].find_one(
        {"_id": reconcile_id("devices", SINCE.isoformat(), UNTIL.isoformat())}
    )
    assert recorded is not None
    assert recorded["run_id"] == run["run_id"] and recorded["outcome"] == "ok", recorded
    assert (recorded["pulled"], recorded["stored"], recorded["rejected"]) == (
        len(offered),
        valid,
        len(offered) - valid,
    )

    # Not logged in: the API refuses; Airflow's own token opens it.
    assert requests.get(api, timeout=30).status_code == 401
    token = {"Authorization": f"Bearer {airflow_token(settings)}"}
    assert requests.get(api, headers=token, timeout=30).status_code == 200

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1500, "height": 1100})
            page.set_default_timeout(60_000)
            # The page itself sends a browser without a login to Airflow's login, then back.
            page.goto(f"{a.base_url}/headwater/")
            expect(page.locator("input[name=username]")).to_be_visible()
            _login(page, settings)
            expect(page.locator('tr[data-source="devices"]')).to_be_visible()

            # In the Airflow UI: the nav bar's Headwater entry opens the page in the UI's frame.
            page.goto(a.base_url)
            page.get_by_role("link", name="Headwater").click()
            expect(page).to_have_url(re.compile(r"/plugin/headwater"))
            frame = page.frame_locator("iframe[title=Headwater]")
            expect(frame.locator("h1")).to_have_text("Headwater")

            # The same figures as the JSON API, fetched with the browser's own login (cookie).
            answer = page.request.get(api)
            assert answer.status == 200
            summary = answer.json()
            devices = next(s for s in summary["sources"] if s["name"] == "devices")
            ours = next(
                r for r in devices["recent_reconciles"] if r["run_id"] == recorded["run_id"]
            )
            assert (ours["stored"], ours["rejected"]) == (valid, len(offered) - valid)
            assert devices["lag"]["partitions"], "no consumer member reports the devices topic"
            health = {h["check"]: h for h in summary["health"]}
            assert health[CHECK_LAG]["latest"]["detail"].startswith(health_run)
            assert health[CHECK_HEALTHZ]["latest"]["ok"] is True
            assert any(f["recovered"] for f in health[CHECK_HEALTHZ]["failures"])
            _check_page_against(frame, summary)
            expect(frame.locator(f'tr[data-check="{CHECK_LAG}"]')).to_contain_text(
                f"{health_run}: devices lag 2345 > 1000"
            )
            expect(frame.locator(f'tr[data-check="{CHECK_HEALTHZ}"]')).to_contain_text(
                f"{health_run}: events-api refused"
            )
            # Tall enough for the whole page to show in the UI's frame (it scrolls on its own):
            # its height depends on what the stack holds (a long-used test stack has more
            # reconciles and failures to list), so measure it.
            content = frame.locator("body").evaluate("b => b.scrollHeight")
            top = page.locator("iframe[title=Headwater]").bounding_box()
            assert top is not None
            height = min(int(top["y"] + content + 100), 12_000)
            page.set_viewport_size({"width": 1500, "height": max(height, 1100)})
            expect(frame.locator('[data-testid="dags"]')).to_be_in_viewport()
            page.screenshot(path=str(SHOT))

            # A DAG link moves the Airflow UI itself to the DAG, not the frame.
            row = frame.locator('tr[data-source="devices"]')
            row.get_by_role("link", name="devices").click()
            expect(page).to_have_url(f"{a.base_url}/dags/ingest_devices")
            expect(page.locator("iframe[title=Headwater]")).to_have_count(0)
        finally:
            browser.close()
    assert SHOT.stat().st_size > 10_000


class _Finds(monitoring.CommandListener):
    """Every find command a client sends."""

    def __init__(self) -> None:
        self.commands: list[dict[str, Any]] = []

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        if event.command_name == "find":
            self.commands.append(dict(event.command))

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


def _index_names(plan: Any) -> list[str]:
    if isinstance(plan, dict):
        found = [plan["indexName"]] if plan.get("stage") == "IXSCAN" else []
        return found + [n for v in plan.values() for n in _index_names(v)]
    if isinstance(plan, list):
        return [n for v in plan for n in _index_names(v)]
    return []


def test_every_read_behind_the_page_is_bounded_and_uses_an_index(
    live_stack: Settings, probes: ModuleType
) -> None:
    store = importlib.import_module("headwater_ui.ui_store")
    finds = _Finds()
    # The plugin's probes fixture puts the plugins folder on sys.path, as Airflow does.
    uri = live_stack.mongo.uri
    with MongoClient(uri, tz_aware=True, event_listeners=[finds]) as client:
        db = client[live_stack.mongo.db]
        store.read_inputs(
            db, list(load_sources().values()), group="headwater-consumer", stale_after_s=30.0
        )
        assert finds.commands
        for command in finds.commands:
            assert command.get("limit", 0) > 0, command
            query = {
                k: command[k] for k in ("filter", "sort", "limit", "projection") if k in command
            }
            plan = db.command("explain", {"find": command["find"], **query})
            assert _index_names(plan), f"{command['find']} {query} scans: {plan}"

"""A person's path through the Airflow UI, in a real headless Chromium: log in, trigger the
simulator ingest with a custom window through the trigger form, and see the run succeed."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import requests
from playwright.sync_api import Locator, Page, expect, sync_playwright

from headwater.clients import mongo_client
from headwater.reconcile import count
from headwater.settings import REPO_ROOT, Settings
from infra.airflow import airflow_token
from producer.simulator import malformed_kind, readings

CHROMIUM = "/usr/bin/chromium"
# No sandbox as root; no background traffic to hosts this machine cannot reach.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-dev-shm-usage",
]
ARTIFACTS = REPO_ROOT / "tests" / "artifacts"
SINCE = datetime(2025, 6, 9, 14, 0, tzinfo=UTC)
UNTIL = SINCE + timedelta(minutes=3)


def _manual_runs(settings: Settings) -> list[dict]:
    headers = {"Authorization": f"Bearer {airflow_token(settings)}"}
    resp = requests.get(
        f"{settings.airflow.base_url}/api/v2/dags/ingest_devices/dagRuns",
        params={"run_type": "manual", "limit": 100},
        headers=headers,
        timeout=10,
    )
    resp.raise_for_status()
    return resp.json()["dag_runs"]


def _stored(settings: Settings) -> int:
    with mongo_client(settings) as client:
        bounds = {"$gte": SINCE, "$lt": UNTIL}
        # The count command: count_documents is a pipeline the embedded server runs in memory.
        return count(client[settings.mongo.db], "readings", {"source": "devices", "ts": bounds})


def set_datetime(page: Page, dialog: Locator, helper_text: str, moment: datetime) -> None:
    """Fill one of the form's date-time params through its picker, as a person would."""
    field = dialog.locator("[role=group]").filter(has_text=helper_text)
    field.get_by_test_id("datetime-input").click()
    picker = page.locator("[data-scope=popover][data-part=content][data-state=open]")
    picker.get_by_placeholder("YYYY/MM/DD").fill(moment.strftime("%Y/%m/%d"))
    picker.get_by_placeholder("HH:mm").fill(moment.strftime("%H:%M"))
    page.keyboard.press("Escape")  # closes the picker, not the dialog
    expect(field).not_to_contain_text("Select date and time")


@pytest.mark.timeout(600)
def test_trigger_form_runs_the_ingest_for_a_custom_window(live_stack: Settings) -> None:
    settings = live_stack
    a = settings.airflow
    before = {r["dag_run_id"] for r in _manual_runs(settings)}
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / "airflow_trigger_ingest_devices.png"
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.set_default_timeout(60_000)
            page.goto(a.base_url)
            page.fill("input[name=username]", a.user)
            page.fill("input[name=password]", a.password.get_secret_value())
            page.click("button[type=submit]")
            page.wait_for_selector("text=Dags")

            page.goto(f"{a.base_url}/dags/ingest_devices")
            page.get_by_role("button", name="Trigger Dag").click()
            dialog = page.get_by_role("dialog")
            set_datetime(page, dialog, "window start", SINCE)
            set_datetime(page, dialog, "window end", UNTIL)
            page.screenshot(path=str(ARTIFACTS / "airflow_trigger_form.png"))
            dialog.get_by_test_id("trigger-dag-submit").click()

            deadline = time.monotonic() + 300
            run: dict | None = None
            while time.monotonic() < deadline:
                new = [r for r in _manual_runs(settings) if r["dag_run_id"] not in before]
                if new:
                    run = new[0]
                    if run["state"] in ("success", "failed"):
                        break
                time.sleep(3)
            assert run is not None, "the trigger form created no run"
            page.goto(f"{a.base_url}/dags/ingest_devices/runs/{run['dag_run_id']}")
            page.wait_for_timeout(3000)
            page.screenshot(path=str(shot), full_page=True)
        finally:
            browser.close()
            # The form unpauses the DAG on trigger (its default); leave the test stack quiet.
            requests.patch(
                f"{a.base_url}/api/v2/dags/ingest_devices",
                json={"is_paused": True},
                headers={"Authorization": f"Bearer {airflow_token(settings)}"},
                timeout=10,
            )

    assert run["state"] == "success", run
    assert run["conf"]["since"].startswith("2025-06-09T14:00"), run["conf"]
    assert Path(shot).stat().st_size > 10_000
    n = settings.services.simulator_devices
    valid = sum(
        1 for r in readings(SINCE, UNTIL, n) if malformed_kind(r["device_id"], r["ts"]) is None
    )
    assert _stored(settings) == valid

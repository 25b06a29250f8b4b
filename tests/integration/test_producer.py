"""Sources into Kafka: exact, re-runnable windows, through failures, and never a silent loss."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

from headwater.settings import REPO_ROOT, Settings
from headwater.sources import Source, get_source
from infra import stack
from producer.kafka_out import ProduceError
from producer.pull import RetryPolicy
from producer.service import ingest_window
from producer.simulator import readings
from tests.integration.http_helpers import free_port
from tests.integration.kafka_helpers import consume_all

SINCE = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)
UNTIL = SINCE + timedelta(minutes=10)


def expected_device_keys(settings: Settings, since: datetime, until: datetime) -> Counter[str]:
    n = settings.services.simulator_devices
    return Counter(f"{r['device_id']}|{r['ts']}" for r in readings(since, until, n))


def devices_into(topic: str) -> Source:
    return get_source("devices").model_copy(update={"topic": topic})


def test_ten_minute_simulator_window_is_exact_and_rerun_gives_the_same_keys(
    live_stack: Settings, topic: str, unique_name: str
) -> None:
    source = devices_into(topic)
    expected = expected_device_keys(live_stack, SINCE, UNTIL)
    assert sum(expected.values()) == live_stack.services.simulator_devices * 600

    first = ingest_window(source, SINCE, UNTIL, live_stack, run_id="run-1")
    assert first.pulled == first.produced == sum(expected.values())
    got = consume_all(live_stack, topic, unique_name + "-1", first.produced)
    assert Counter(k for k, _ in got) == expected

    second = ingest_window(source, SINCE, UNTIL, live_stack, run_id="run-2")
    assert second.produced == first.produced
    got = consume_all(live_stack, topic, unique_name + "-2", 2 * first.produced)
    # The same window twice: every key exactly twice, byte-identical values (the store upserts).
    assert Counter(k for k, _ in got) == Counter({k: 2 for k in expected})
    values: dict[str, set[str]] = {}
    for key, value in got:
        values.setdefault(key, set()).add(value)
    assert all(len(v) == 1 for v in values.values())


class FlakyProxy:
    """A real HTTP server on loopback that forwards to the stand-in but fails on a script."""

    def __init__(self, upstream: str, script: list[tuple[int, dict[str, str]]]) -> None:
        self.upstream = upstream
        self.script = list(script)
        self.calls: list[int] = []
        self.server = make_server("127.0.0.1", 0, self._app, threaded=True)
        self.port = self.server.server_port
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def _app(self, environ: dict[str, Any], start_response: Any) -> Any:
        import requests

        request = Request(environ)
        if self.script:
            status, headers = self.script.pop(0)
            self.calls.append(status)
            response = Response(json.dumps({"error": "injected"}), status, headers)
            return response(environ, start_response)
        upstream = requests.get(self.upstream + request.path, params=request.args, timeout=30)
        self.calls.append(upstream.status_code)
        response = Response(upstream.content, upstream.status_code, content_type="application/json")
        return response(environ, start_response)

    def __enter__(self) -> FlakyProxy:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.thread.join(timeout=10)


def test_source_failing_500_twice_and_429_still_completes_exactly(
    live_stack: Settings, topic: str, unique_name: str
) -> None:
    svc = live_stack.services
    upstream = f"http://{svc.host}:{svc.external_api_port}"
    script = [(500, {}), (500, {}), (429, {"Retry-After": "1"})]
    with FlakyProxy(upstream, script) as proxy:
        source = devices_into(topic).model_copy(
            update={"base_url": f"http://127.0.0.1:{proxy.port}"}
        )
        policy = RetryPolicy(attempts=5, base_delay_s=0.2, max_delay_s=1.0)
        result = ingest_window(source, SINCE, UNTIL, live_stack, run_id="flaky", policy=policy)
    assert proxy.calls[:3] == [500, 500, 429]
    expected = expected_device_keys(live_stack, SINCE, UNTIL)
    assert result.produced == sum(expected.values())
    got = consume_all(live_stack, topic, unique_name, result.produced)
    assert Counter(k for k, _ in got) == expected


def test_produce_raises_when_the_broker_is_down_for_the_whole_run(live_stack: Settings) -> None:
    source = devices_into("devices")
    dead = f"127.0.0.1:{free_port()}"
    with pytest.raises(ProduceError, match=r"0/\d+ acknowledged"):
        ingest_window(
            source,
            SINCE,
            SINCE + timedelta(seconds=30),
            live_stack,
            run_id="dead-broker",
            producer_overrides={"bootstrap.servers": dead, "message.timeout.ms": 3000},
        )


def test_produce_raises_when_a_broker_dies_and_the_topic_cannot_be_written(
    live_stack: Settings, unique_name: str
) -> None:
    # A topic whose only replica lives on broker 2; with broker 2 SIGKILLed for the whole produce,
    # no message can be acknowledged and the run must fail instead of reporting success.
    from confluent_kafka.admin import NewTopic

    from headwater.kafka_access import grant_topics
    from headwater.kafka_admin import admin_client, delete_topics

    admin = admin_client(live_stack)
    # Writable by the producer principal: the produce must fail for the dead broker alone.
    grant_topics(admin, live_stack, [unique_name])
    admin.create_topics([NewTopic(unique_name, num_partitions=1, replica_assignment=[[3]])])[
        unique_name
    ].result()
    killed = stack.kill_program(live_stack, "kafka-broker2")
    try:
        with pytest.raises(ProduceError):
            ingest_window(
                devices_into(unique_name),
                SINCE,
                SINCE + timedelta(seconds=30),
                live_stack,
                run_id="broker-down",
                producer_overrides={"message.timeout.ms": 5000},
            )
    finally:
        stack.start_program(live_stack, "kafka-broker2")
        # A fresh client: the old one may still route admin requests to the restarted broker.
        delete_topics(admin_client(live_stack), [unique_name])
    assert not stack.alive(killed)


def test_cli_pulls_one_window_into_a_topic(
    live_stack: Settings, topic: str, unique_name: str
) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "producer",
            "pull",
            "devices",
            "--since",
            "2026-01-05T12:00:00Z",
            "--until",
            "2026-01-05T12:01:00Z",
            "--topic",
            topic,
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    n = live_stack.services.simulator_devices * 60
    assert summary["pulled"] == summary["produced"] == n
    assert len(consume_all(live_stack, topic, unique_name, n)) == n


def test_user_events_window_is_pulled_exactly_and_rerun_gives_the_same_keys(
    live_stack: Settings, topic: str, unique_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import requests

    svc = live_stack.services
    base = f"http://{svc.host}:{svc.flask_port}"
    monkeypatch.setenv("HEADWATER_API_KEY", svc.api_key.get_secret_value())
    before = datetime.now(UTC) - timedelta(milliseconds=5)
    ids = []
    for i in range(30):
        resp = requests.post(
            f"{base}/events",
            json={"user_id": f"{unique_name}-u{i % 4}", "event_type": "page_view"},
            headers={"X-API-Key": svc.api_key.get_secret_value()},
            timeout=10,
        )
        assert resp.status_code == 201, resp.text
        ids.append(resp.json()["event"]["event_id"])
    after = datetime.now(UTC) + timedelta(milliseconds=5)

    source = get_source("user-events").model_copy(update={"topic": topic})
    first = ingest_window(source, before, after, live_stack, run_id="events-1")
    # Other tests may post events too: the window holds at least ours, each exactly once.
    got = consume_all(live_stack, topic, unique_name + "-1", first.produced)
    keys = Counter(k for k, _ in got)
    assert first.produced == len(got) >= len(ids)
    assert all(keys[event_id] == 1 for event_id in ids)
    second = ingest_window(source, before, after, live_stack, run_id="events-2")
    assert second.produced == first.produced
    got = consume_all(live_stack, topic, unique_name + "-2", 2 * first.produced)
    assert Counter(k for k, _ in got) == Counter({k: 2 for k in keys})

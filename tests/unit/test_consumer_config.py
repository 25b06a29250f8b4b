"""Which topics the consumer reads and under which declared topic's contract."""

from __future__ import annotations

import pytest

from consumer.config import ConsumerSettings, build_config, parse_topic_map
from headwater.settings import Settings

DECLARED = ["devices", "machine-metrics", "user-events"]


def test_no_topics_setting_means_every_declared_topic() -> None:
    assert parse_topic_map("", DECLARED) == {t: t for t in DECLARED}


def test_topics_may_be_read_under_another_name() -> None:
    assert parse_topic_map("t-1-dev=devices, user-events", DECLARED) == {
        "t-1-dev": "devices",
        "user-events": "user-events",
    }


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("weather", "topic 'weather' is not declared in sources.yaml; declared: devices, "),
        ("a=weather", "topic 'weather' is not declared"),
        ("a=devices,a=user-events", "topic 'a' is listed twice"),
        (" , ", "no topics to consume"),
    ],
)
def test_bad_topic_settings_fail_with_the_reason(spec: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_topic_map(spec, DECLARED)


def test_config_takes_group_port_and_database_from_headwater_settings() -> None:
    settings = Settings()
    config = build_config(settings, ConsumerSettings(topics=""), DECLARED, "host-1")
    assert config.group_id == settings.kafka.consumer_group
    assert config.http_port == settings.services.consumer_port
    assert config.mongo_db == settings.mongo.db
    assert config.instance == "host-1"
    assert config.topics == sorted(DECLARED)
    own = build_config(settings, ConsumerSettings(group="g2", instance="i2"), DECLARED, "host-1")
    assert (own.group_id, own.instance) == ("g2", "i2")

"""HealthCheckSensor: pokes one Headwater health check until it passes, recording every result."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from airflow.sdk import BaseSensorOperator, Context

from headwater.health_checks import ALL_CHECKS


def _poke_interval() -> timedelta:
    """HEADWATER_HEALTH_POKE_INTERVAL_S (30 s by default; the test stack pokes faster)."""
    from headwater.settings import get_settings

    return timedelta(seconds=get_settings().services.health_poke_interval_s)


TIMEOUT = timedelta(minutes=3)


class HealthCheckSensor(BaseSensorOperator):
    """Run `check` (one of headwater.health_checks.ALL_CHECKS) every poke until it passes.

    Reschedule mode: between pokes the task gives its worker slot back. Each poke upserts its
    result into health_checks (one document per check, run and try: the last poke wins), so a
    failed run shows what was wrong and by how much.
    """

    template_fields = ("check_params",)

    def __init__(
        self,
        *,
        check: str,
        check_params: Mapping[str, Any] | None = None,
        kafka_config_id: str = "kafka_default",
        mongo_conn_id: str = "mongo_default",
        **kwargs: Any,
    ) -> None:
        if check not in ALL_CHECKS:
            raise ValueError(f"unknown check {check!r}; allowed: {', '.join(ALL_CHECKS)}")
        kwargs.setdefault("mode", "reschedule")
        kwargs.setdefault("poke_interval", _poke_interval())
        kwargs.setdefault("timeout", TIMEOUT)
        kwargs.setdefault("soft_fail", False)
        super().__init__(**kwargs)
        self.check = check
        self.check_params = dict(check_params or {})
        self.kafka_config_id = kafka_config_id
        self.mongo_conn_id = mongo_conn_id

    def poke(self, context: Context) -> bool:
        from airflow.providers.apache.kafka.hooks.client import KafkaAdminClientHook
        from airflow.providers.mongo.hooks.mongo import MongoHook

        from headwater.settings import get_settings
        from headwater_health.probes import NEEDS_KAFKA, run_and_record

        settings = get_settings()
        admin = None
        if self.check in NEEDS_KAFKA:
            # get_conn is a cached property of the provider hook: the AdminClient itself.
            admin = KafkaAdminClientHook(kafka_config_id=self.kafka_config_id).get_conn
        client = MongoHook(mongo_conn_id=self.mongo_conn_id).get_conn()
        try:
            doc = run_and_record(
                self.check,
                settings,
                admin=admin,
                db=client[settings.mongo.db],
                run_id=context["run_id"],
                try_number=context["ti"].try_number,
                params=self.check_params,
            )
        finally:
            client.close()
        if not doc["ok"]:
            self.log.warning("%s failing: %s", self.check, doc["detail"])
        return bool(doc["ok"])

"""Who may do what on the Kafka cluster: each role's SCRAM credentials and its ACLs.

The brokers take only SASL/SCRAM-SHA-512 on their listeners and authorize every request with
Kafka's StandardAuthorizer (infra/kafka_cluster.py); a principal without an ACL may do nothing.
The roles, and all that each may do:

- broker:   the brokers themselves (replication, broker-to-controller); a super user.
- admin:    the stack's own setup, the consumer's topic creation for a newly declared source, and
            the tests' and benches' tooling; a super user.
- producer: write (and describe) each pipeline topic; nothing else.
- consumer: read (and describe) each pipeline topic, and read the consumer group(s) named
            `kafka.consumer_group`, or starting with it, to join and commit.
- health:   describe the cluster, each pipeline topic and those groups (watermarks, committed
            offsets, lag): what the Airflow health checks and reconcile need to look.

One small topic is not a source's: the late-data notices (`kafka.late_notices_topic`). The
consumer writes it (and nothing else); the health principal reads it in its own group
(`kafka.late_watch_group`), for Airflow's AssetWatcher (dags/rollups.py).

The rules are data (Grant) so they are tested without a cluster; `apply_access` and
`grant_topics` make a live cluster match them, idempotently (an ACL that exists is kept, a
credential is re-set from settings).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from confluent_kafka import KafkaException
from confluent_kafka.admin import (
    AclBinding,
    AclOperation,
    AclPermissionType,
    AdminClient,
    ResourcePatternType,
    ResourceType,
    ScramCredentialInfo,
    ScramMechanism,
    UserScramCredentialUpsertion,
)

from headwater.kafka_admin import ensure_topics, wait_authorized, wait_replicated
from headwater.settings import Settings

log = logging.getLogger(__name__)

# Kafka's name of the one cluster resource.
CLUSTER = "kafka-cluster"
SUPER_ROLES = ("broker", "admin")
# The roles whose credentials `apply_access` (re)sets on a running cluster. The super users'
# are written when the storage is formatted: they are what logs in to set the others.
CLIENT_ROLES = ("producer", "consumer", "health")

_RESOURCES = {
    "topic": ResourceType.TOPIC,
    "group": ResourceType.GROUP,
    "cluster": ResourceType.BROKER,
}
_PATTERNS = {"literal": ResourcePatternType.LITERAL, "prefixed": ResourcePatternType.PREFIXED}
_OPERATIONS = {
    "read": AclOperation.READ,
    "write": AclOperation.WRITE,
    "describe": AclOperation.DESCRIBE,
}


@dataclass(frozen=True)
class Grant:
    """One ALLOW rule: `role` may `operation` the `resource` named `name` (or prefixed by it)."""

    role: str
    resource: str  # "topic", "group" or "cluster"
    name: str
    operation: str  # "read", "write" or "describe"
    pattern: str = "literal"  # or "prefixed"


def topic_grants(topic: str) -> list[Grant]:
    """What each role may do on one pipeline topic."""
    return [
        Grant("producer", "topic", topic, "write"),
        Grant("producer", "topic", topic, "describe"),
        Grant("consumer", "topic", topic, "read"),
        Grant("consumer", "topic", topic, "describe"),
        Grant("health", "topic", topic, "describe"),
    ]


def group_grants(group: str, pattern: str = "literal") -> list[Grant]:
    """The consumer joins and commits the group; the health checks read its offsets."""
    return [
        Grant("consumer", "group", group, "read", pattern),
        Grant("health", "group", group, "describe", pattern),
    ]


def standing_grants(settings: Settings) -> list[Grant]:
    """The grants that do not depend on the declared topics: the groups and the cluster."""
    # Prefixed: the pipeline's group and the groups named after it (a bench's, for one).
    grants = group_grants(settings.kafka.consumer_group, "prefixed")
    if settings.consumer.group and not settings.consumer.group.startswith(
        settings.kafka.consumer_group
    ):
        grants += group_grants(settings.consumer.group)
    return [*grants, *late_notice_grants(settings), Grant("health", "cluster", CLUSTER, "describe")]


def late_notice_grants(settings: Settings) -> list[Grant]:
    """The consumer publishes late-data notices; Airflow's watcher (health) reads them."""
    topic, group = settings.kafka.late_notices_topic, settings.kafka.late_watch_group
    return [
        Grant("consumer", "topic", topic, "write"),
        Grant("consumer", "topic", topic, "describe"),
        Grant("health", "topic", topic, "read"),
        Grant("health", "topic", topic, "describe"),
        Grant("health", "group", group, "read"),
        Grant("health", "group", group, "describe"),
    ]


def principal(settings: Settings, role: str) -> str:
    """The Kafka principal of a role, as ACLs and `super.users` name it."""
    return f"User:{settings.kafka.credentials(role)[0]}"


def super_users(settings: Settings) -> str:
    """`super.users` of every node: the brokers' principal and the admin's."""
    return ";".join(principal(settings, role) for role in SUPER_ROLES)


def acl_binding(settings: Settings, grant: Grant) -> AclBinding:
    return AclBinding(
        _RESOURCES[grant.resource],
        grant.name,
        _PATTERNS[grant.pattern],
        principal(settings, grant.role),
        "*",
        _OPERATIONS[grant.operation],
        AclPermissionType.ALLOW,
    )


def scram_argument(settings: Settings, role: str) -> str:
    """The storage tool's `--add-scram` value that creates a role's credential at format time."""
    user, password = settings.kafka.credentials(role)
    iterations = settings.kafka.scram_iterations
    return f"SCRAM-SHA-512=[name={user},iterations={iterations},password={password}]"


def grant(
    admin: AdminClient, settings: Settings, grants: list[Grant], timeout_s: float = 30.0
) -> int:
    """Create the ACLs of `grants` (existing ones are left as they are); returns how many."""
    if not grants:
        return 0
    futures = admin.create_acls(
        [acl_binding(settings, g) for g in grants], request_timeout=timeout_s
    )
    for binding, future in futures.items():
        try:
            future.result()
        except KafkaException as exc:
            raise RuntimeError(f"granting {binding} failed: {exc}") from exc
    return len(grants)


def grant_topics(
    admin: AdminClient, settings: Settings, topics: list[str], timeout_s: float = 30.0
) -> int:
    """Let the producer write, the consumer read and the health checks describe `topics`."""
    count = grant(admin, settings, [g for t in topics for g in topic_grants(t)], timeout_s)
    log.info("kafka acls granted topics=%s acls=%d", ",".join(topics) or "-", count)
    return count


def create_topics(admin: AdminClient, settings: Settings, topics: list[str]) -> list[str]:
    """Grant `topics` to their roles, then create the missing ones; returns those created.

    In that order so that no client ever sees its topic refuse it: ACLs and topics are records of
    one metadata log that every broker applies in order, so a broker that knows the topic already
    enforces its ACLs. (Granted after the creation, a producer that is fast enough is refused
    with TOPIC_AUTHORIZATION_FAILED, which it does not retry.) Returns once every replica broker
    holds every partition (see kafka_admin.wait_replicated) and every broker lets the producer and
    consumer roles see it (kafka_admin.wait_authorized): a broker still behind refuses it too.
    """
    grant_topics(admin, settings, topics)
    k = settings.kafka
    created = ensure_topics(admin, topics, k.partitions, k.replication_factor)
    wait_replicated(admin, topics, k.replication_factor)
    wait_authorized(settings, topics)
    return created


def set_credentials(
    admin: AdminClient, settings: Settings, roles: tuple[str, ...] = CLIENT_ROLES
) -> list[str]:
    """(Re)set the SCRAM credential of each role from settings; returns the users set."""
    info = ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, settings.kafka.scram_iterations)
    upserts = []
    for role in roles:
        user, password = settings.kafka.credentials(role)
        upserts.append(UserScramCredentialUpsertion(user, info, password.encode()))
    futures = admin.alter_user_scram_credentials(upserts)
    for user, future in futures.items():
        try:
            future.result()
        except KafkaException as exc:
            raise RuntimeError(f"setting the SCRAM credential of {user} failed: {exc}") from exc
    users = sorted(futures)
    log.info("kafka credentials set users=%s", ",".join(users))
    return users


def apply_access(admin: AdminClient, settings: Settings, topics: list[str]) -> int:
    """Every role's credential and every ACL for `topics`; returns the number of ACLs."""
    set_credentials(admin, settings)
    return grant(admin, settings, standing_grants(settings)) + grant_topics(admin, settings, topics)

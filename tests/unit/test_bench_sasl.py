"""The SASL bench's pure parts: its throwaway node's config, client configs, ACLs, summaries."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.report import format_table, sasl_rows, summary_rows
from bench.sasl_bench import (
    ANONYMOUS,
    CONNECT_FIGURES,
    FIGURES,
    TOPIC_PREFIX,
    BenchPorts,
    Samples,
    access_bindings,
    bench_consumer_config,
    bench_group_prefix,
    bench_node_properties,
    bench_producer_config,
    check_sizes,
    compare,
    listener_config,
    new_cluster_id,
    next_offsets,
    pair_order,
    parse_properties,
    render_properties,
    scram_arguments,
    summarise,
)
from headwater.clients import producer_config
from headwater.settings import KAFKA_ROLES, Settings, StackSettings

PORTS = BenchPorts(controller=41001, sasl=41002, plaintext=41003)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(stack=StackSettings(run_dir=tmp_path / "stack"))


@pytest.fixture
def props(settings: Settings, tmp_path: Path) -> dict[str, str]:
    return bench_node_properties(settings, PORTS, tmp_path / "bench" / "data")


# ---- the throwaway node ------------------------------------------------------------------------


def test_node_is_one_kraft_node_that_is_broker_and_its_own_controller(props):
    assert props["process.roles"] == "broker,controller"
    assert props["node.id"] == "1"
    assert props["controller.quorum.voters"] == f"1@127.0.0.1:{PORTS.controller}"
    assert props["controller.listener.names"] == "CONTROLLER"


def test_node_listens_for_clients_on_plaintext_and_sasl_side_by_side(props):
    assert props["listeners"] == (
        "BROKER://127.0.0.1:41002,PLAINTEXT://127.0.0.1:41003,CONTROLLER://127.0.0.1:41001"
    )
    # The controller listener is never advertised to clients.
    assert props["advertised.listeners"] == "BROKER://127.0.0.1:41002,PLAINTEXT://127.0.0.1:41003"
    protocols = dict(
        entry.split(":") for entry in props["listener.security.protocol.map"].split(",")
    )
    assert protocols == {
        "CONTROLLER": "SASL_PLAINTEXT",
        "BROKER": "SASL_PLAINTEXT",
        "PLAINTEXT": "PLAINTEXT",
    }
    assert props["listener.name.broker.sasl.enabled.mechanisms"] == "SCRAM-SHA-512"


def test_node_keeps_the_stack_brokers_authorizer_and_super_users(props):
    assert props["authorizer.class.name"].endswith("StandardAuthorizer")
    assert props["allow.everyone.if.no.acl.found"] == "false"
    assert props["super.users"] == "User:headwater-broker;User:headwater-admin"
    assert props["inter.broker.listener.name"] == "BROKER"
    assert props["auto.create.topics.enable"] == "false"


def test_node_replicates_everything_once_internal_topics_too(props):
    for key in (
        "default.replication.factor",
        "min.insync.replicas",
        "offsets.topic.replication.factor",
        "transaction.state.log.replication.factor",
        "transaction.state.log.min.isr",
        "share.coordinator.state.topic.replication.factor",
        "share.coordinator.state.topic.min.isr",
    ):
        assert props[key] == "1", key


def test_node_keeps_its_data_in_the_temp_dir_not_the_stacks(props, settings, tmp_path):
    assert props["log.dirs"] == str(tmp_path / "bench" / "data")
    assert not any(str(settings.stack.data_dir) in value for value in props.values())


def test_node_properties_render_back_to_the_same_values(props):
    text = render_properties(props)
    assert text.endswith("\n")
    # JAAS lines hold '=' of their own: only the first one ends the key.
    assert parse_properties(text) == props


def test_format_creates_every_roles_scram_credential(settings):
    arguments = scram_arguments(settings)
    assert arguments[::2] == ["--add-scram"] * len(KAFKA_ROLES)
    for value, role in zip(arguments[1::2], KAFKA_ROLES, strict=True):
        user, password = settings.kafka.credentials(role)
        assert value == (
            f"SCRAM-SHA-512=[name={user},iterations={settings.kafka.scram_iterations},"
            f"password={password}]"
        )


def test_cluster_ids_are_fresh_and_never_read_as_an_option():
    ids = {new_cluster_id() for _ in range(500)}
    assert len(ids) == 500
    assert all(len(i) == 22 and not i.startswith("-") for i in ids)


# ---- clients and their rights ------------------------------------------------------------------


def test_plaintext_client_differs_from_sasl_only_in_listener_and_credentials(settings):
    sasl = bench_producer_config(settings, PORTS, "sasl")
    plain = bench_producer_config(settings, PORTS, "plaintext")
    assert sasl["bootstrap.servers"] == "127.0.0.1:41002"
    assert sasl["sasl.mechanism"] == "SCRAM-SHA-512"
    assert sasl["sasl.username"] == settings.kafka.producer_user
    assert plain["bootstrap.servers"] == "127.0.0.1:41003"
    assert plain["security.protocol"] == "PLAINTEXT"
    assert not [k for k in plain if k.startswith("sasl.")]
    headwater = producer_config(settings)
    assert {k for k in sasl if k != "bootstrap.servers"} == set(headwater) - {"bootstrap.servers"}
    for key in headwater.keys() - {"bootstrap.servers", "security.protocol"}:
        if not key.startswith("sasl."):
            assert plain[key] == sasl[key] == headwater[key], key


def test_consumer_is_headwaters_consumer_in_the_bench_group(settings):
    group = f"{bench_group_prefix(settings)}-sasl-0"
    conf = bench_consumer_config(settings, PORTS, "sasl", group)
    assert conf["group.id"] == group
    assert conf["enable.auto.commit"] is False
    assert conf["auto.offset.reset"] == "earliest"
    assert conf["sasl.username"] == settings.kafka.consumer_user
    plain = bench_consumer_config(settings, PORTS, "plaintext", group)
    assert {k for k in conf if not k.startswith("sasl.")} == set(plain)


def test_unknown_listener_is_refused_naming_the_allowed_ones(settings):
    with pytest.raises(ValueError, match="one of plaintext, sasl"):
        bench_producer_config(settings, PORTS, "ssl")


def test_a_config_without_headwaters_security_is_refused():
    with pytest.raises(ValueError, match=r"security\.protocol=SASL_PLAINTEXT"):
        listener_config({"acks": "all"}, "sasl", PORTS)


def test_both_listeners_principals_get_the_same_rights(settings):
    bindings = access_bindings(settings)

    def rights(principal: str) -> set[tuple[object, ...]]:
        return {
            (b.restype, b.name, b.resource_pattern_type, b.operation)
            for b in bindings
            if b.principal == principal
        }

    named = rights(f"User:{settings.kafka.producer_user}") | rights(
        f"User:{settings.kafka.consumer_user}"
    )
    assert rights(ANONYMOUS) == named
    assert {name for _, name, _, _ in named} == {TOPIC_PREFIX, bench_group_prefix(settings)}
    assert len(bindings) == len(set(map(str, bindings)))  # the admin API refuses duplicates
    # Only the producer and consumer principals: no super user hides the ACL checks.
    assert {b.principal for b in bindings} == {
        ANONYMOUS,
        f"User:{settings.kafka.producer_user}",
        f"User:{settings.kafka.consumer_user}",
    }


class _Msg:
    def __init__(self, topic: str, partition: int, offset: int) -> None:
        self._at = (topic, partition, offset)

    def topic(self) -> str:
        return self._at[0]

    def partition(self) -> int:
        return self._at[1]

    def offset(self) -> int:
        return self._at[2]


def test_commit_is_one_past_the_last_message_of_each_partition():
    batch = [_Msg("t", 1, 5), _Msg("t", 0, 7), _Msg("t", 1, 6), _Msg("t", 0, 3)]
    assert [(tp.topic, tp.partition, tp.offset) for tp in next_offsets(batch)] == [
        ("t", 0, 8),
        ("t", 1, 7),
    ]


def test_sizes_that_cannot_give_a_consumer_rate_are_refused():
    check_sizes(100_000, 5, 5, 2000)
    with pytest.raises(ValueError, match="at least 4000"):
        check_sizes(3999, 5, 5, 2000)
    with pytest.raises(ValueError, match="trials"):
        check_sizes(100_000, 0, 5, 2000)
    with pytest.raises(ValueError, match="connects"):
        check_sizes(100_000, 5, 0, 2000)


# ---- summaries ---------------------------------------------------------------------------------


def test_pairs_alternate_which_listener_runs_first():
    assert [pair_order(t) for t in range(4)] == [
        ("plaintext", "sasl"),
        ("sasl", "plaintext"),
        ("plaintext", "sasl"),
        ("sasl", "plaintext"),
    ]


FIRSTS = ["plaintext", "sasl", "plaintext"]


def test_comparison_pairs_trials_in_order():
    compared = compare([100.0, 200.0, 150.0], [90.0, 100.0, 150.0], FIRSTS, 0)
    assert compared["plaintext"] == {"n": 3, "median": 150.0, "min": 100.0, "max": 200.0}
    assert compared["sasl"] == {"n": 3, "median": 100.0, "min": 90.0, "max": 150.0}
    # Per pair: 0.9, 0.5, 1.0; not the ratio of the medians (0.667).
    assert compared["ratio"] == {"n": 3, "median": 0.9, "min": 0.5, "max": 1.0}
    assert compared["difference"] == {"n": 3, "median": -10.0, "min": -100.0, "max": 0.0}
    assert compared["ratio_of_medians"] == 0.667


def test_comparison_gives_the_ratios_of_each_order_apart():
    compared = compare([100.0, 200.0, 150.0], [90.0, 100.0, 150.0], FIRSTS, 0)
    assert compared["ratio_by_first"] == {
        "plaintext": {"n": 2, "median": 0.95, "min": 0.9, "max": 1.0},
        "sasl": {"n": 1, "median": 0.5, "min": 0.5, "max": 0.5},
    }
    only_plain_first = compare([100.0], [90.0], ["plaintext"], 0)
    assert list(only_plain_first["ratio_by_first"]) == ["plaintext"]


def test_comparison_needs_as_many_trials_of_each():
    with pytest.raises(ValueError, match="same number"):
        compare([1.0, 2.0], [1.0], ["plaintext", "sasl"], 1)
    with pytest.raises(ValueError, match="same number"):
        compare([1.0, 2.0], [1.0, 2.0], ["plaintext"], 1)
    with pytest.raises(ValueError, match="same number"):
        compare([], [], [], 1)


def _samples() -> Samples:
    per_pair = {f: {"plaintext": [10.0, 12.0], "sasl": [11.0, 13.2]} for f in FIGURES}
    # Every client: mostly fast, one slow on each listener (the modes librdkafka shows).
    clients = {
        f: {"plaintext": [0.005, 0.006, 0.055], "sasl": [0.020, 0.021, 0.070]}
        for f in CONNECT_FIGURES
    }
    return Samples(per_pair, ["plaintext", "sasl"], clients)


def test_summary_has_every_figure_with_what_it_measures():
    summary = summarise(_samples())
    assert list(summary) == list(FIGURES)
    for figure, (what, _) in FIGURES.items():
        assert summary[figure]["what"] == what
        assert summary[figure]["ratio"]["median"] == 1.1


def test_connecting_keeps_every_clients_percentiles_not_only_the_pairs_medians():
    summary = summarise(_samples())
    for figure in CONNECT_FIGURES:
        clients = summary[figure]["every_client"]
        assert clients["plaintext"]["n"] == 3
        assert clients["plaintext"]["p50_ms"] == 6.0
        assert clients["sasl"]["p50_ms"] == 21.0
        assert clients["sasl"]["max_ms"] == 70.0
    assert "every_client" not in summary["producer_records_per_s"]


def test_summary_of_a_missing_figure_is_an_error_not_a_zero():
    samples = _samples()
    del samples.per_pair["consumer_first_batch_ms"]
    with pytest.raises(ValueError, match="consumer_first_batch_ms"):
        summarise(samples)
    samples = _samples()
    del samples.clients["connect_metadata_ms"]
    with pytest.raises(ValueError, match="connect_metadata_ms"):
        summarise(samples)


def test_table_shows_sasl_beside_plaintext_and_their_ratio():
    rows = sasl_rows({"figures": summarise(_samples())})
    assert len(rows) == len(FIGURES) + len(CONNECT_FIGURES)
    first = rows[0]
    assert first[0] == "sasl"
    assert first[2] == "12 (11-13, n=2)"
    assert first[3] == "plaintext 11 (10-12, n=2)"
    assert first[4] == "1.100"
    labels = [r[1].strip() for r in rows]
    ack = labels.index("fresh producer -> first ack, ms")
    assert rows[ack][2] == "12.1 (11.0-13.2, n=2)"
    assert rows[ack + 1][1].strip() == "every client, p50/p95/p99 ms"
    assert rows[ack + 1][2:] == ("21 / 65 / 69", "plaintext 6 / 50 / 54", "")
    format_table(rows)  # every row fits the table's columns


def test_a_failed_sasl_part_leaves_no_rows():
    assert summary_rows({"sasl": {"error": "RuntimeError: bench Kafka exited 1"}}) == []
    rows = summary_rows({"sasl": {"figures": summarise(_samples())}})
    assert rows and {r[0] for r in rows} == {"sasl"}

"""A consumed Kafka message as plain data, so the pure core never touches a client object."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

TopicPartition = tuple[str, int]


@dataclass(frozen=True)
class InboundMessage:
    """One message as read: where it sits, its key, value and headers (bytes as sent)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes | None], ...] = ()
    timestamp_ms: int | None = None

    @property
    def tp(self) -> TopicPartition:
        return (self.topic, self.partition)

    @property
    def ref(self) -> str:
        """topic|partition|offset: where the message is, for logs."""
        return f"{self.topic}|{self.partition}|{self.offset}"

    @property
    def content_id(self) -> str:
        """topic|sha256(key, value)[:32]: the same record produced again (a re-run, a backfill,
        a retried task) has the same content id wherever it lands; the _id of its rejection."""
        digest = hashlib.sha256()
        for part in (self.key, self.value):
            if part is None:
                digest.update(b"\x00")
            else:
                digest.update(b"\x01" + len(part).to_bytes(8, "big") + part)
        return f"{self.topic}|{digest.hexdigest()[:32]}"

    def header(self, name: str) -> bytes | None:
        """The last value of header `name` (Kafka allows repeats; the last one wins)."""
        found = None
        for key, value in self.headers:
            if key == name:
                found = value
        return found

    def header_text(self, name: str) -> str | None:
        """Header `name` as text, None when absent or not UTF-8."""
        value = self.header(name)
        if value is None:
            return None
        try:
            return value.decode()
        except UnicodeDecodeError:
            return None

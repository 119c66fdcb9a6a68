"""Ask the broker, as a principal, whether it may do what a command is about to do (issue 22).

A SASL principal whose ACL is missing (removed by hand, a broker provisioned by an older version, a
tenant revoked) used to fail deep inside a Kafka client, and the Flink job restarted forever. The
commands now list what they will do (``Need``: an operation on a topic, a consumer group or a
transactional id) and check it first with their own credentials; a refusal is one line.

How each need is checked, and why that exercises authorization without side effects:

- Topics: ``AdminClient.describe_topics(include_authorized_operations=True)`` (KIP-430). The broker's
  own authorizer answers, for the authenticated principal, which operations it allows on each
  topic: the same decision a Fetch (READ) or Produce (WRITE) gets, without reading or writing a
  record. A topic the principal may not even DESCRIBE answers TOPIC_AUTHORIZATION_FAILED (so does
  a missing one then: Kafka does not tell an unauthorized client which topics exist); a missing
  topic it may DESCRIBE answers UNKNOWN_TOPIC_OR_PART, which is not a refusal (pattern reads skip
  it, and the commands create their own missing topics or report them).
- Consumer groups: ``describe_consumer_groups(include_authorized_operations=True)``, likewise;
  a group that does not exist yet still gets the authorizer's answer (state DEAD).
- Transactional ids: there is no describe call in the client, so a transactional producer's
  ``init_transactions``: FindCoordinator needs DESCRIBE and InitProducerId WRITE on the id. It
  fences an earlier producer of that id, which the command's own start does a moment later
  anyway, and it is only tried once every other need passed (a refused run fences nobody).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from infra.secure import SecureError, explain_kafka_error, quiet_kafka_logger
from infra.settings import Settings

__all__ = [
    "AccessProbe",
    "AccessRefused",
    "Need",
    "Refusal",
    "refusal_line",
    "refusals",
    "require",
    "uses_sasl",
]

# The operations Kafka lets each granted operation imply (AclOperation docs, KIP-430's lists).
_IMPLIES: Final = {
    "READ": {"DESCRIBE"},
    "WRITE": {"DESCRIBE"},
    "DELETE": {"DESCRIBE"},
    "ALTER": {"DESCRIBE"},
    "ALTER_CONFIGS": {"DESCRIBE_CONFIGS"},
}
_NOUN: Final = {"TOPIC": "topic", "GROUP": "consumer group", "TRANSACTIONAL_ID": "transactional id"}
SHOWN: Final = 3  # refusals named in the line; the rest are counted
# Answers of a broker whose group or transaction coordinator is not ready yet (just started).
_TRANSIENT: Final = {"NOT_COORDINATOR", "COORDINATOR_NOT_AVAILABLE", "COORDINATOR_LOAD_IN_PROGRESS",
                     "LEADER_NOT_AVAILABLE"}  # fmt: skip


@dataclass(frozen=True, order=True)
class Need:
    resource: str  # TOPIC, GROUP or TRANSACTIONAL_ID
    name: str
    operation: str  # READ, WRITE, DESCRIBE


@dataclass(frozen=True, order=True)
class Refusal:
    principal: str
    need: Need


def uses_sasl(settings: Settings) -> bool:
    """Whether the settings log in as a named SASL principal (the only case with ACLs to check)."""
    return settings.kafka_security_protocol.upper().startswith("SASL") and bool(settings.kafka_sasl_username)


def _allows(granted: frozenset[str], operation: str) -> bool:
    if operation in granted or "ALL" in granted:
        return True
    return any(operation in _IMPLIES.get(op, ()) for op in granted)


def refusals(
    principal: str, needs: Iterable[Need], granted: Mapping[tuple[str, str], frozenset[str] | None]
) -> list[Refusal]:
    """The needs the broker's answers do not allow. ``granted[(resource, name)]`` is the set of
    operations the broker reported, empty when it refused the resource outright, None when the
    resource does not exist (nothing to refuse) or was not asked."""
    out = []
    for need in needs:
        ops = granted.get((need.resource, need.name))
        if ops is not None and not _allows(ops, need.operation):
            out.append(Refusal(principal, need))
    return sorted(set(out))


def refusal_line(found: list[Refusal], bootstrap: str, fix: str) -> str:
    """One line for the user: who may not do what, where, and what to run."""
    principal = found[0].principal
    named = [f"{r.need.operation} {_NOUN.get(r.need.resource, r.need.resource)} {r.need.name}" for r in found]
    shown = ", ".join(named[:SHOWN]) + (f" and {len(named) - SHOWN} more" if len(named) > SHOWN else "")
    return f"user {principal} is not allowed to {shown} (Kafka at {bootstrap} refused): {fix}"


class AccessRefused(SecureError):
    """The broker refuses some of a command's needs: ``str()`` is the one line."""

    def __init__(self, found: list[Refusal], line: str) -> None:
        super().__init__(line)
        self.refusals = found


def _error_name(exc: BaseException) -> str:
    err = exc.args[0] if exc.args else None
    name = getattr(err, "name", None)
    return str(name()) if callable(name) else ""


class AccessProbe:
    """One admin connection as the settings' principal, for the lifetime of one check."""

    def __init__(self, settings: Settings, timeout_s: float = 15.0) -> None:
        from confluent_kafka.admin import AdminClient

        from infra.clients import kafka_config

        self.settings = settings
        self.principal = settings.kafka_sasl_username
        self.timeout_s = timeout_s
        self._conf = {**kafka_config(settings, "confluent"), "logger": quiet_kafka_logger()}
        self._admin = AdminClient(self._conf)

    def _failed(self, exc: BaseException, what: str) -> SecureError:
        """A failure that is not a refusal (login, network): in our words, never a traceback."""
        line = explain_kafka_error(exc, self.settings)
        if line is None:
            err = exc.args[0] if exc.args else exc
            detail = f"{_error_name(exc)} {err.str()}" if hasattr(err, "str") else str(exc)
            line = f"Kafka at {self.settings.kafka_bootstrap} did not answer {what}: {detail}"
        return SecureError(line)

    def visible_topics(self, pattern: str | None = None) -> list[str]:
        """The topics this principal may DESCRIBE (the broker hides the others), matching ``pattern``
        as the consumers match it (the whole name)."""
        try:
            names = list(self._admin.list_topics(timeout=self.timeout_s).topics)
        except Exception as exc:
            raise self._failed(exc, "the list of topics") from None
        regex = re.compile(pattern) if pattern else None
        return sorted(n for n in names if regex is None or regex.fullmatch(n))

    def _describe(
        self, resource: str, names: list[str], call: Callable[[list[str]], dict[str, Any]], refused: str
    ) -> dict[tuple[str, str], frozenset[str] | None]:
        """The authorized operations of each ``names`` (``call`` describes them); empty for a
        ``refused`` answer, absent for a missing topic. A coordinator that is still loading (a
        broker just started) is asked again until the timeout."""
        out: dict[tuple[str, str], frozenset[str] | None] = {}
        deadline = time.monotonic() + self.timeout_s
        pending = names
        while pending:
            retry = []
            for name, fut in call(pending).items():
                try:
                    ops = fut.result(timeout=self.timeout_s * 2).authorized_operations or []
                    out[(resource, name)] = frozenset(op.name for op in ops)
                except Exception as exc:
                    code = _error_name(exc)
                    if code == refused:
                        out[(resource, name)] = frozenset()
                    elif code in _TRANSIENT and time.monotonic() < deadline:
                        retry.append(name)
                    elif code != "UNKNOWN_TOPIC_OR_PART":
                        noun = _NOUN[resource]
                        raise self._failed(exc, f"a describe of {noun} {name}") from None
            pending = retry
            if pending:
                time.sleep(0.5)
        return out

    def _topics(self, names: list[str]) -> dict[tuple[str, str], frozenset[str] | None]:
        from confluent_kafka import TopicCollection

        def call(batch: list[str]) -> dict[str, Any]:
            return dict(self._admin.describe_topics(
                TopicCollection(batch), include_authorized_operations=True, request_timeout=self.timeout_s
            ))  # fmt: skip

        return self._describe("TOPIC", names, call, "TOPIC_AUTHORIZATION_FAILED") if names else {}

    def _groups(self, names: list[str]) -> dict[tuple[str, str], frozenset[str] | None]:
        def call(batch: list[str]) -> dict[str, Any]:
            return dict(self._admin.describe_consumer_groups(
                batch, include_authorized_operations=True, request_timeout=self.timeout_s
            ))  # fmt: skip

        return self._describe("GROUP", names, call, "GROUP_AUTHORIZATION_FAILED") if names else {}

    def _transactional_id(self, txn_id: str) -> frozenset[str]:
        """What ``init_transactions`` shows of the id: both operations, or the one refused missing."""
        from confluent_kafka import KafkaException, Producer

        producer = Producer({**self._conf, "transactional.id": txn_id})
        try:
            producer.init_transactions(self.timeout_s)
        except KafkaException as exc:
            if _error_name(exc) != "TRANSACTIONAL_ID_AUTHORIZATION_FAILED":
                raise self._failed(exc, f"transactions for id {txn_id}") from None
            # librdkafka says which request was refused: FindCoordinator needs DESCRIBE.
            text = str(exc.args[0]) if exc.args else str(exc)
            return frozenset() if "find transaction coordinator" in text.lower() else frozenset({"DESCRIBE"})
        return frozenset({"WRITE", "DESCRIBE"})

    def check(self, needs: Iterable[Need]) -> list[Refusal]:
        """Ask the broker for every need; the refused ones."""
        needs = sorted(set(needs))
        granted = self._topics(sorted({n.name for n in needs if n.resource == "TOPIC"}))
        granted |= self._groups(sorted({n.name for n in needs if n.resource == "GROUP"}))
        found = refusals(self.principal, needs, granted)
        if not found:  # only now: init_transactions fences an earlier producer of the id
            for txn in sorted({n.name for n in needs if n.resource == "TRANSACTIONAL_ID"}):
                granted[("TRANSACTIONAL_ID", txn)] = self._transactional_id(txn)
            found = refusals(self.principal, needs, granted)
        return found


def require(settings: Settings, needs: Iterable[Need], fix: str, probe: AccessProbe | None = None) -> None:
    """Raise ``AccessRefused`` (one line, with ``fix``) when the broker refuses any of ``needs``."""
    found = (probe or AccessProbe(settings)).check(needs)
    if found:
        raise AccessRefused(found, refusal_line(found, settings.kafka_bootstrap, fix))

"""Builds canonical events with deterministic ids.

Every event id is ``event_id("sim", "<stream>:<n>")``: the stream names who made the event (a
background time slice or one scenario instance) and ``n`` counts within it, so ids are unique,
stable for a seed, and independent of how the events are later interleaved.
"""

from __future__ import annotations

from typing import Any, Final

from ingest.schema import AuditEvent, AuthEvent, FlowEvent, ProcessEvent, event_id

__all__ = ["SOURCE", "EventMaker"]

SOURCE: Final = "sim"


class EventMaker:
    __slots__ = ("_n", "_prefix")

    def __init__(self, stream: str) -> None:
        self._prefix = stream + ":"
        self._n = 0

    def next_id(self) -> str:
        self._n += 1
        return event_id(SOURCE, self._prefix + str(self._n))

    def flow(
        self,
        ts: int,
        src_ip: str,
        dst_ip: str,
        *,
        src_port: int,
        dst_port: int,
        proto: str = "tcp",
        bytes_out: int = 0,
        bytes_in: int = 0,
        packets_out: int = 0,
        packets_in: int = 0,
        duration_ms: int = 0,
        action: str = "accept",
        tenant: str | None = None,
        host: str | None = None,
        vm: str | None = None,
        extra: dict[str, Any] | None = None,
    ) -> FlowEvent:
        return FlowEvent(
            id=self.next_id(),
            ts=ts,
            source=SOURCE,
            tenant=tenant,
            host=host,
            vm=vm,
            extra=extra or {},
            src_ip=src_ip,
            dst_ip=dst_ip,
            src_port=src_port,
            dst_port=dst_port,
            proto=proto,
            bytes_out=bytes_out,
            bytes_in=bytes_in,
            packets_out=packets_out,
            packets_in=packets_in,
            duration_ms=duration_ms,
            action="reject" if action == "reject" else "accept",
        )

    def process(
        self,
        ts: int,
        exe: str,
        syscall: str,
        *,
        host: str | None,
        pid: int,
        ppid: int = 1,
        parent_exe: str = "",
        cmdline: str = "",
        uid: int = 0,
        path: str | None = None,
        failed: bool = False,
        tenant: str | None = None,
        vm: str | None = None,
        extra: dict[str, Any] | None = None,
    ) -> ProcessEvent:
        return ProcessEvent(
            id=self.next_id(),
            ts=ts,
            source=SOURCE,
            tenant=tenant,
            host=host,
            vm=vm,
            extra=extra or {},
            exe=exe,
            syscall=syscall,
            pid=pid,
            ppid=ppid,
            parent_exe=parent_exe,
            cmdline=cmdline,
            uid=uid,
            path=path,
            result="failure" if failed else "success",
        )

    def audit(
        self,
        ts: int,
        principal: str,
        action: str,
        resource: str,
        *,
        principal_tenant: str,
        resource_tenant: str,
        src_ip: str,
        failed: bool = False,
        extra: dict[str, Any] | None = None,
    ) -> AuditEvent:
        return AuditEvent(
            id=self.next_id(),
            ts=ts,
            source=SOURCE,
            tenant=principal_tenant,
            extra=extra or {},
            principal=principal,
            action=action,
            resource=resource,
            principal_tenant=principal_tenant,
            resource_tenant=resource_tenant,
            src_ip=src_ip,
            result="failure" if failed else "success",
        )

    def auth(
        self,
        ts: int,
        user: str,
        src_ip: str,
        *,
        failed: bool,
        method: str = "password",
        tenant: str | None,
        host: str | None,
        vm: str | None,
        service: str = "sshd",
    ) -> AuthEvent:
        return AuthEvent(
            id=self.next_id(),
            ts=ts,
            source=SOURCE,
            tenant=tenant,
            host=host,
            vm=vm,
            user=user,
            src_ip=src_ip,
            service=service,
            method=method,
            result="failure" if failed else "success",
        )

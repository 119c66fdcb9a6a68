"""One source fails many logins (brute force) or fails a few on many targets (password spray)."""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any, ClassVar, cast

from detectors.alert import Entity
from detectors.base import Batch, Finding
from detectors.config import DetectorConfig, ParamSpec
from detectors.meta import DetectorMeta, technique
from detectors.state import Span, add_capped
from detectors.windowed import WindowedDetector
from detectors.windows import Window

__all__ = ["AuthFailures", "AuthState"]


class AuthState:
    __slots__ = ("failures", "last_success", "span", "successes", "targets", "users")

    def __init__(self) -> None:
        self.span = Span()
        self.failures = 0
        self.successes = 0
        self.last_success = -1
        self.users: set[str] = set()
        self.targets: set[str] = set()

    def __getstate__(self) -> tuple[object, ...]:
        return (self.span, self.failures, self.successes, self.last_success, self.users, self.targets)

    def __setstate__(self, s: tuple[object, ...]) -> None:
        (self.span, self.failures, self.successes, self.last_success, self.users, self.targets) = s  # type: ignore[assignment]


class AuthFailures(WindowedDetector[AuthState]):
    meta = DetectorMeta(
        id="brute_force.auth_failures",
        version="1.1.0",
        title="Login brute force",
        category="brute_force",
        score=50,
        severity="medium",
        attack=(
            technique("Credential Access", "T1110.001", "Password Guessing"),
            technique("Credential Access", "T1110.003", "Password Spraying"),
        ),
        kinds=frozenset({"auth"}),
        description="Failed logins from one source address in a window: at least params.min_failures, "
        "or params.spray_min_failures spread over params.spray_min_targets hosts; in both cases most of "
        "the source's attempts must fail (params.min_failure_ratio), which keeps busy offices quiet.",
        false_positives=(
            "a misconfigured client or automation retrying a changed password",
            "a NAT gateway in front of many users (raise thresholds or allowlist it)",
        ),
        note="A success after the failures (evidence.success_after_failures) means a likely compromised "
        "account: disable it and inspect the session. Otherwise block the source at the edge.",
        maturity="stable",
    )
    param_spec: ClassVar[ParamSpec] = {
        "min_failures": int,
        "spray_min_failures": int,
        "spray_min_targets": int,
        "min_failure_ratio": float,
        "allowed_sources": list,
        "compromise_score": int,
    }

    def configure(self, config: DetectorConfig) -> None:
        p = self.params
        self.min_failures = int(p["min_failures"])
        self.spray_failures = int(p["spray_min_failures"])
        self.spray_targets = int(p["spray_min_targets"])
        self.min_ratio = float(p["min_failure_ratio"])
        self.allowed = frozenset(p["allowed_sources"])
        self.compromise_score = int(p["compromise_score"])

    def new_state(self, key: Hashable) -> AuthState:
        return AuthState()

    def observe_batch(self, batch: Batch) -> None:
        allowed, cap, max_ids, state = self.allowed, self.max_distinct, self.max_ids, self.state
        for ev in batch.auths:
            try:
                src = ev.src_ip
                if not src or src in allowed:
                    continue
                st: AuthState | None = state(ev.ts, (ev.tenant, src))
                if st is None:
                    continue
                if ev.result == "failure":
                    st.failures += 1
                    st.span.add(ev.ts, ev.id, max_ids)
                    add_capped(st.users, ev.user, cap)
                    add_capped(st.targets, ev.vm or ev.host or "?", cap)
                else:
                    st.successes += 1
                    if ev.ts > st.last_success:
                        st.last_success = ev.ts
                        if st.failures and len(st.span.ids) <= max_ids:
                            st.span.ids.append(ev.id)
            except Exception as exc:
                self.error(ev, exc)

    def merge(self, into: AuthState, other: AuthState) -> None:
        into.span.merge(other.span, self.max_ids)
        into.failures += other.failures
        into.successes += other.successes
        into.last_success = max(into.last_success, other.last_success)
        for u in other.users:
            add_capped(into.users, u, self.max_distinct)
        for t in other.targets:
            add_capped(into.targets, t, self.max_distinct)

    def finish_key(self, window: Window, key: Hashable, state: AuthState) -> Finding | None:
        f = state.failures
        if f == 0 or f / (f + state.successes) < self.min_ratio:
            return None
        spray = f >= self.spray_failures and len(state.targets) >= self.spray_targets
        if f < self.min_failures and not spray:
            return None
        tenant, src = cast(tuple[Any, str], key)
        compromised = state.last_success > state.span.first
        kind = "password spray" if spray and len(state.targets) > 1 else "password guessing"
        summary = (
            f"{src} failed {f} logins ({kind}) on {len(state.targets)} target(s) "
            f"as {len(state.users)} user name(s)"
        )
        if compromised:
            summary += ", then logged in successfully: treat the account as compromised"
        return Finding(
            entity=Entity("ip", src),
            tenant=tenant,
            window=window,
            score=self.compromise_score if compromised else self.meta.score,
            summary=summary,
            first_seen=state.span.first,
            last_seen=max(state.span.last, state.last_success),
            count=f,
            event_ids=list(state.span.ids),
            evidence={
                "failures": f,
                "successes": state.successes,
                "distinct_users": len(state.users),
                "distinct_targets": len(state.targets),
                "users": sorted(state.users)[:10],
                # The VMs (or hosts) the logins failed on: the victims the incident stage links to.
                "targets": sorted(t for t in state.targets if t != "?")[:10],
                "success_after_failures": compromised,
            },
            attack=self.meta.attack[1] if kind == "password spray" else None,
        )

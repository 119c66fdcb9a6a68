"""Cold start of the local stack (fresh data directory, its own ports) and the JVMs' memory."""

from __future__ import annotations

import contextlib
import tempfile
import threading
import time
from typing import Any

from infra.services import down, services, up
from tests.bench.procfs import rss_kib


def run(ctx: Any) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="ssa-bench-stack-") as tmp:
        s = ctx.settings.with_overrides(
            data_dir=tmp,
            kafka_port=ctx.settings.kafka_port + 1000,
            kafka_controller_port=ctx.settings.kafka_controller_port + 1000,
            es_port=ctx.settings.es_port + 1000,
            es_transport_port=ctx.settings.es_transport_port + 1000,
            kafka_bootstrap=f"127.0.0.1:{ctx.settings.kafka_port + 1000}",
            es_url=f"http://127.0.0.1:{ctx.settings.es_port + 1000}",
        )
        peaks: dict[str, int] = {}
        stop = threading.Event()

        def sample() -> None:
            while not stop.is_set():
                for svc in services(s):
                    pid = svc.proc.pid()
                    if pid:
                        with contextlib.suppress(OSError):
                            peaks[svc.name] = max(peaks.get(svc.name, 0), rss_kib(pid))
                time.sleep(0.25)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        t0 = time.perf_counter()
        try:
            states = up(s, progress=lambda _m: None)
            cold_s = time.perf_counter() - t0
            time.sleep(5)  # a few seconds of idle after start-up, as an operator would see it
        finally:
            stop.set()
            sampler.join()
            down(s, progress=lambda _m: None)
    out: dict[str, Any] = {"stack_cold_start_to_healthy_s": round(cold_s, 1)}
    for st in states:
        out[f"{st.name}_healthy_after_s"] = round(st.started_in_s or 0.0, 1)
    for name, kb in peaks.items():
        out[f"{name}_peak_rss_mb"] = round(kb / 1024)
    out["peak_rss_total_mb"] = round(sum(peaks.values()) / 1024)
    return out

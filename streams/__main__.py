"""Entry point of the detection job: ``python -m streams`` (what ``ssa detect`` runs) or
``flink run -py streams/__main__.py`` on a cluster, configured only by ``SSA_*`` settings.

``--bounded`` reads the telemetry present at start and ends (tests, demo, replays; it starts
fresh: a bounded Kafka source cannot resume, FLINK-31006); otherwise the job runs until stopped
and resumes from its newest checkpoint. ``--no-indexer`` leaves shipping to Elasticsearch to ``ssa index``.
"""

from __future__ import annotations

import argparse
import logging
import sys

from infra.settings import SettingsError, load_settings

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ssa detect", description=__doc__)
    parser.add_argument("--bounded", action="store_true", help="process what is in Kafka now, then stop")
    parser.add_argument("--no-restore", action="store_true", help="ignore existing checkpoints")
    parser.add_argument("--no-indexer", action="store_true", help="do not ship alerts to Elasticsearch")
    parser.add_argument(
        "--indexer-idle-exit",
        type=float,
        default=10.0,
        help="bounded runs: seconds without records before stopping",
    )
    parser.add_argument(
        "--no-awareness",
        action="store_true",
        help="leave the awareness stage (incidents, threat levels, warnings) out: benchmarks, diagnosis",
    )
    args = parser.parse_args(argv)
    if args.no_awareness and not (args.bounded or args.no_restore):
        # Flink refuses a checkpoint holding state of operators the job no longer has.
        parser.error("--no-awareness needs --bounded or --no-restore: a checkpoint with the awareness "
                     "stage's state cannot be restored into a job without it")  # fmt: skip
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    from infra.process import ServiceError
    from streams.runner import run_bounded, run_forever

    try:
        settings = load_settings()
        if args.bounded:
            return run_bounded(
                settings,
                index=not args.no_indexer,
                indexer_idle_exit_s=args.indexer_idle_exit,
                awareness=not args.no_awareness,
            )
        return run_forever(
            settings, restore=not args.no_restore, index=not args.no_indexer, awareness=not args.no_awareness
        )
    except (SettingsError, ServiceError) as exc:
        print(f"ssa detect: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())

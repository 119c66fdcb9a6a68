"""Run the evaluations and write ``results/detector_eval.json`` (merged by section).

    python -m detectors.evaluation all --data-dir /work/shared/data --out results/detector_eval.json \
        --seeds 201,202,203,204,205 --table results/detector_scorecard.txt
    python -m detectors.evaluation simulated --seeds 201,202,203,204,205
    python -m detectors.evaluation simulated --seeds 201,202 --as-vpc 600 --section simulated_as_vpc
    python -m detectors.evaluation simulated --seeds 201,202 --as-cicflow seconds --section simulated_as_cicflow
    python -m detectors.evaluation openssh|flows|adfa|anomaly-sim --data-dir DIR
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from detectors.evaluation.common import write_result

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m detectors.evaluation", description=__doc__.splitlines()[0])
    ap.add_argument("what", choices=("all", "simulated", "openssh", "flows", "adfa", "anomaly-sim"))
    ap.add_argument("--data-dir", type=Path, default=Path(__file__).resolve().parents[3] / "shared" / "data")
    ap.add_argument("--out", type=Path, default=Path("results/detector_eval.json"))
    ap.add_argument("--seeds", default="201,202,203,204,205")
    ap.add_argument("--duration-s", type=float, default=7200.0)
    ap.add_argument("--count", type=int, default=3, help="instances of each scenario per seed")
    ap.add_argument("--table", type=Path, help="also write the simulator scorecard as text here")
    ap.add_argument("--section", default="simulated", help="name of the simulator section in the JSON")
    ap.add_argument("--as-vpc", type=int, choices=(60, 600), metavar="SECONDS",
                    help="simulated: the flows re-exported as VPC Flow Logs of this aggregation interval")  # fmt: skip
    ap.add_argument("--as-cicflow", choices=("seconds", "minutes"),
                    help="simulated: the flows re-exported as CICFlowMeter records, start times to the ...")  # fmt: skip
    args = ap.parse_args(argv)
    if args.as_vpc and args.as_cicflow:
        ap.error("--as-vpc and --as-cicflow: one re-export at a time")
    todo = ("simulated", "openssh", "flows", "adfa", "anomaly-sim") if args.what == "all" else (args.what,)
    ref = args.data_dir / "reference_results"
    for what in todo:
        if what == "simulated":
            from detectors.evaluation.simulated import evaluate_seeds

            seeds = [int(s) for s in args.seeds.split(",") if s]
            card, _ = evaluate_seeds(
                seeds,
                duration_s=args.duration_s,
                count=args.count,
                as_vpc_s=args.as_vpc,
                as_cicflow=args.as_cicflow,
            )
            print(card.table())
            if args.table:
                args.table.parent.mkdir(parents=True, exist_ok=True)
                args.table.write_text(card.table() + "\n", encoding="utf-8")
            write_result(args.out, args.section, card.to_json())
        elif what == "openssh":
            from detectors.evaluation.openssh import openssh

            result = openssh(args.data_dir)
            print(json.dumps(result["attacking_addresses"], indent=1))
            write_result(args.out, "openssh_brute_force", json.loads(json.dumps(result, default=dict)))
        elif what == "flows":
            from detectors.evaluation import flows as flow_eval

            flows = {"adbench_http": flow_eval.adbench(args.data_dir, "http", ref),
                     "adbench_smtp": flow_eval.adbench(args.data_dir, "smtp", ref),
                     "unsw_nb15": flow_eval.unsw(args.data_dir, ref)}  # fmt: skip
            for name, res in flows.items():
                for fam, row in res["models"].items():
                    print(name, fam, json.dumps({k: v for k, v in row.items() if k != "ours_per_seed"})[:300])
            flow_findings = flow_eval.findings(flows)
            print(json.dumps(flow_findings, indent=1))
            write_result(
                args.out,
                "flow_models",
                {**flows, "method": dict(flow_eval.METHOD), "findings": flow_findings},
            )
        elif what == "adfa":
            from detectors.evaluation import adfa as adfa_eval

            result = adfa_eval.adfa(args.data_dir)
            result |= {"method": adfa_eval.METHOD, "findings": adfa_eval.findings(result)}
            for fam, row in result["models"].items():
                print("adfa", fam, {k: v["roc_auc"] for k, v in row.items()})
            print(json.dumps(result["findings"], indent=1))
            write_result(args.out, "adfa_ld_process_model", result)
        elif what == "anomaly-sim":
            from detectors.evaluation.simulated_anomaly import evaluate_anomaly

            result = evaluate_anomaly()
            for fam, row in result["families"].items():
                print("anomaly-sim", fam, {k: row[k] for k in ("anomaly_alerts", "true_alerts", "precision")})
            write_result(args.out, "simulated_anomaly_detectors", result)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Summary of a transfer study (issue 24, benchmark 1): jump start, steps to a threshold, AUC.

Reads a study folder (``rlsurgery compare`` wrote it, e.g. from ``scripts/bench/transfer_cartpole.yaml``)
and prints, per variant and env, medians over seeds of:

* jump start: the first evaluation's mean return (minus the baseline's);
* steps to threshold: the first evaluation step whose mean return is ≥ ``--threshold`` (never: ∞), and
  its ratio to the baseline's (the goal: ≤ 0.5 for at least one transfer surgery on each pair);
* area under the curve: the mean of the run's evaluation returns.

    python scripts/bench/transfer_summary.py docs/bench-data/studies/transfer-cartpole --threshold 475
"""

from __future__ import annotations

import argparse
import math

import numpy as np

from rlsurgery.bench.store import ResultStore


def per_run(evals, threshold: float) -> dict:
    """(jump start, steps to threshold, AUC) of one run's evaluations, in step order."""
    evals = evals.sort_values("step")
    reached = evals[evals["mean_return"] >= threshold]["step"]
    return {
        "jump": float(evals["mean_return"].iloc[0]),
        "to_threshold": float(reached.iloc[0]) if len(reached) else math.inf,
        "auc": float(evals["mean_return"].mean()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("study", help="the study folder")
    parser.add_argument("--threshold", type=float, required=True, help="the return that counts as reached")
    parser.add_argument(
        "--baseline", default=None, help="the variant the others compare with (default: the study's)"
    )
    args = parser.parse_args()
    results = ResultStore.open_existing(args.study).results()
    baseline = args.baseline or results.baseline or results.variants[0]
    print("| env | variant | seeds | jump start | Δ jump | steps to threshold | ratio | AUC |")
    print("|---|---|---|---|---|---|---|---|")
    for env_id, on_env in results.evals.groupby("env_id"):
        summary = {}
        for variant, rows in on_env.groupby("variant"):
            runs = [per_run(r, args.threshold) for _, r in rows.groupby("run_id")]
            summary[variant] = {k: float(np.median([r[k] for r in runs])) for k in runs[0]} | {
                "seeds": len(runs)
            }
        base = summary.get(baseline)
        for variant in results.variants:
            s = summary.get(variant)
            if s is None:
                continue
            jump = s["jump"] - base["jump"] if base else math.nan
            ratio = (
                s["to_threshold"] / base["to_threshold"]
                if base and math.isfinite(base["to_threshold"])
                else math.nan
            )
            cells = [env_id, variant, s["seeds"], f"{s['jump']:.1f}", f"{jump:+.1f}"]
            cells += [f"{s['to_threshold']:.0f}", f"{ratio:.2f}", f"{s['auc']:.1f}"]
            print("| " + " | ".join(str(c) for c in cells) + " |")


if __name__ == "__main__":
    main()

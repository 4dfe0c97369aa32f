"""Fault-injection benchmark (issue 7) from its study folder: did each run diverge, and what did it end with?

    python scripts/bench/faults_summary.py docs/bench-data/studies/repair-faults-dqn [--clean clean]

Per variant and seed: the final greedy return, the mean of the last ``--last`` evaluations, the
last logged ``train/loss`` (NaN: the run diverged; a run that crashed is listed as failed, with
its error, and counts as diverged) and the repairs' event counts (rollbacks,
filtered updates, snapshots dropped as tainted). Then the issue's goal, per repaired variant
(names containing ``repaired``): every run ends with a finite loss, and its median return over
seeds is within 10% of the median of the clean runs (``--clean``), on the final evaluation and on
the mean of the last evaluations.
"""

from __future__ import annotations

import argparse
import math
import re

import numpy as np

from rlsurgery.bench.store import ResultStore

EXCEPTION = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception)\b")
EVENTS = {
    "rollbacks": "train/checkpoint_rollback_events",
    "filtered": "train/loss_spike_filtering_events",
}


def last_value(metrics, run_id: str, key: str) -> float:
    values = metrics[(metrics["run_id"] == run_id) & (metrics["key"] == key)].sort_values("step")["value"]
    return float(values.iloc[-1]) if len(values) else math.nan


def exception_line(error: str | None) -> str:
    """The traceback's exception line (its last ``SomeError: ...`` line), shortened for a table."""
    lines = [line for line in str(error or "").splitlines() if EXCEPTION.match(line)]
    return (lines[-1][:120] + "…") if lines and len(lines[-1]) > 120 else (lines[-1] if lines else "?")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("study", help="the study folder")
    parser.add_argument("--clean", default="clean", help="the un-faulted variant")
    parser.add_argument("--last", type=int, default=3, help="evaluations averaged for the steadier column")
    args = parser.parse_args()
    with ResultStore.open_existing(args.study) as store:
        results = store.results()
    evals, metrics = results.evals, results.metrics
    dropped = metrics[metrics["key"] == "train/rollback_dropped_snapshot"]
    summary: dict[tuple[str, str], dict[str, list[float]]] = {}
    print(
        f"| variant | env | seed | final return | mean of last {args.last} | last loss | rollbacks "
        "| filtered "
        "| snapshots dropped |"
    )
    print("| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for variant in results.variants:
        for env_id in results.envs:
            runs = results.runs[(results.runs["variant"] == variant) & (results.runs["env_id"] == env_id)]
            for run in runs.sort_values("seed").itertuples():
                entry = summary.setdefault(
                    (variant, env_id), {"final": [], "tail": [], "loss": [], "failed": []}
                )
                if run.status == "failed":  # a crash (a NaN policy's distribution, say) is a divergence
                    entry["failed"].append(run.seed)
                    print(
                        f"| {variant} | {env_id} | {run.seed} | failed: {exception_line(run.error)} "
                        "| — | — | — | — | — |"
                    )
                    continue
                if run.status != "done":
                    continue
                run_evals = evals[evals["run_id"] == run.run_id].sort_values("step")["mean_return"]
                final = float(run_evals.iloc[-1])
                tail = float(run_evals.iloc[-args.last :].mean())
                loss = last_value(metrics, run.run_id, "train/loss")
                events = [last_value(metrics, run.run_id, key) for key in EVENTS.values()]
                n_dropped = int((dropped["run_id"] == run.run_id).sum())
                entry["final"].append(final)
                entry["tail"].append(tail)
                entry["loss"].append(loss)
                shown = ["—" if math.isnan(e) else f"{e:.0f}" for e in events]
                print(
                    f"| {variant} | {env_id} | {run.seed} | {final:.1f} | {tail:.1f} | {loss:.3g} | "
                    f"{shown[0]} | {shown[1]} | {n_dropped} |"
                )
    print()
    print(
        "| variant | env | runs done / failed | median final return | mean ± std | median of last evals "
        "| done runs with a finite last loss |"
    )
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: |")
    for (variant, env_id), entry in summary.items():
        finite = sum(math.isfinite(v) for v in entry["loss"])
        final = np.array(entry["final"])
        cells = (
            [
                f"{np.median(final):.1f}",
                f"{final.mean():.1f} ± {final.std(ddof=1) if len(final) > 1 else 0:.1f}",
                f"{np.median(entry['tail']):.1f}",
            ]
            if len(final)
            else ["—", "—", "—"]
        )
        print(
            f"| {variant} | {env_id} | {len(final)} / {len(entry['failed'])} | {' | '.join(cells)} | "
            f"{finite}/{len(final)} |"
        )
    print()
    for (variant, env_id), entry in summary.items():
        clean = summary.get((args.clean, env_id))
        if "repaired" not in variant or clean is None:
            continue
        if not entry["final"]:
            continue
        finite = all(math.isfinite(v) for v in entry["loss"]) and not entry["failed"]
        checks = []
        for column in ("final", "tail"):
            ours, base = np.median(entry[column]), np.median(clean[column])
            checks.append(f"{column} {ours:.1f} vs {base:.1f} ({ours / base - 1:+.1%})")
        within = all(np.median(entry[c]) >= 0.9 * np.median(clean[c]) for c in ("final", "tail"))
        verdict = "met" if finite and within else "not met"
        print(
            f"goal for {variant} on {env_id} ({len(entry['final'])} runs done): {verdict} — "
            f"finite last loss in every run: {finite}; " + "; ".join(checks)
        )


if __name__ == "__main__":
    main()

"""Success summary of the exploration (issue 4) and HER (issue 5) benchmarks, from a study folder.

    python scripts/bench/exploration_summary.py docs/bench-data/studies/exploration [--json]

Per variant and environment: seeds finished, seeds whose training found the goal (an
episode with extrinsic return above the threshold), seeds whose final greedy evaluation
solves the task, and the median env step of the first successful training episode.
"""

from __future__ import annotations

import argparse
import json
import math

from rlsurgery.bench.stats import success_table
from rlsurgery.bench.store import ResultStore

#: success thresholds: DeepSea pays 1 (minus move costs) only at the treasure; MountainCar
#: returns −200 when the time limit ends the episode before the flag
THRESHOLDS = {
    "DeepSea-10": 0.5,
    "DeepSea-20": 0.5,
    "MountainCar-v0": -200.0,
    # BitFlip (her_bitflip.yaml): a failed episode returns exactly −n (−1 for each of its n steps)
    "BitFlip-15": -14.5,
    "BitFlip-25": -24.5,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("study_dir")
    parser.add_argument("--json", action="store_true", help="print JSON rows")
    args = parser.parse_args()
    with ResultStore.open_existing(args.study_dir) as store:
        table = success_table(store.results(), THRESHOLDS)
    if args.json:
        print(json.dumps(table.to_dict(orient="records"), indent=2, default=str))
        return
    print("| variant | env | found goal | solved (final eval) | median steps to first success |")
    print("|---|---|---|---|---|")
    for row in table.itertuples():
        if not row.seeds:
            continue  # a variant not run on this env (e.g. one added for a single env)
        median = "—" if math.isnan(row.median_first_success) else f"{row.median_first_success:,.0f}"
        print(
            f"| {row.variant} | {row.env} | {row.found}/{row.seeds} | {row.solved}/{row.seeds} | {median} |"
        )


if __name__ == "__main__":
    main()

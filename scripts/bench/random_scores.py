"""Random-policy scores of a suite's environments (the ``random_score`` entries of envs/*.yaml).

Mean and std of the return of a uniformly random policy over 100 episodes, episode ``i``
reset with seed ``i`` and actions drawn from the action space seeded with 0.

    python scripts/bench/random_scores.py classic
    python scripts/bench/random_scores.py minatar --episodes 100
    python scripts/bench/random_scores.py exploration
    python scripts/bench/random_scores.py --env Pendulum-v1     # an env outside the suites
"""

from __future__ import annotations

import argparse

import gymnasium as gym
import numpy as np

from rlsurgery.bench.suites import load_suite
from rlsurgery.envs import ensure_registered


def random_returns(env_id: str, episodes: int, env_kwargs: dict) -> np.ndarray:
    ensure_registered(env_id)
    env = gym.make(env_id, **env_kwargs)
    env.action_space.seed(0)
    returns = []
    for episode in range(episodes):
        env.reset(seed=episode)
        total, done = 0.0, False
        while not done:
            _, reward, terminated, truncated, _ = env.step(env.action_space.sample())
            total += float(reward)
            done = terminated or truncated
        returns.append(total)
    env.close()
    return np.asarray(returns)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("suite", nargs="?", help="suite name or YAML path")
    parser.add_argument("--env", action="append", default=[], help="a Gymnasium id (repeatable)")
    parser.add_argument("--episodes", type=int, default=100)
    args = parser.parse_args()
    if not args.suite and not args.env:
        parser.error("give a suite or --env")
    envs = [(label, env.env_id, env.env_kwargs) for label, env in _suite_envs(args.suite)]
    envs += [(env_id, env_id, {}) for env_id in args.env]
    for label, env_id, env_kwargs in envs:
        returns = random_returns(env_id, args.episodes, env_kwargs)
        print(f"{label:<28} random_score {returns.mean():12.5f}  (std {returns.std():.5f})", flush=True)


def _suite_envs(suite: str | None) -> list:
    return [] if not suite else [(env.label, env) for env in load_suite(suite).envs]


if __name__ == "__main__":
    main()

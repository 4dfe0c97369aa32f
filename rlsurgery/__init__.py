"""rlsurgery: composable, named surgeries on Stable-Baselines3 agents."""

from rlsurgery.agents.dqn import SurgicalDQN

__version__ = "0.1.0"
__all__ = ["SurgicalDQN", "__version__"]

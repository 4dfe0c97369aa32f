"""rlsurgery: composable, named surgeries on Stable-Baselines3 agents.

>>> import rlsurgery as rls
>>> rls.catalog.get("prioritized_replay").status
'implemented'
"""

from rlsurgery import catalog, envs  # envs: registers rlsurgery/DeepSea-v0, Chain-v0, BitFlip-v0
from rlsurgery.agents.a2c import SurgicalA2C
from rlsurgery.agents.convert import surgical
from rlsurgery.agents.dqn import SurgicalDQN
from rlsurgery.agents.ppo import SurgicalPPO
from rlsurgery.agents.sac import SurgicalSAC
from rlsurgery.agents.td3 import SurgicalTD3
from rlsurgery.agents.trpo import SurgicalTRPO
from rlsurgery.core.errors import (
    IncompatibleSurgeryError,
    ParameterError,
    PlannedSurgeryError,
    RecipeError,
    SurgeryError,
    UnknownSurgeryError,
    UntrustedModelError,
)
from rlsurgery.core.model_zip import trusted_zips
from rlsurgery.core.spec import SurgerySpec, parse_spec
from rlsurgery.core.surgery import Attachment, Surgery
from rlsurgery.export import export
from rlsurgery.io import load
from rlsurgery.operate import last_report, operate
from rlsurgery.recipes import load_recipe, make
from rlsurgery.runtime.tasks import Task, switch_task, train_sequence

__version__ = "0.1.0"

__all__ = [
    "Attachment",
    "IncompatibleSurgeryError",
    "ParameterError",
    "PlannedSurgeryError",
    "RecipeError",
    "Surgery",
    "SurgeryError",
    "SurgerySpec",
    "SurgicalA2C",
    "SurgicalDQN",
    "SurgicalPPO",
    "SurgicalSAC",
    "SurgicalTD3",
    "SurgicalTRPO",
    "Task",
    "UnknownSurgeryError",
    "UntrustedModelError",
    "__version__",
    "catalog",
    "envs",
    "export",
    "last_report",
    "load",
    "load_recipe",
    "make",
    "operate",
    "parse_spec",
    "surgical",
    "switch_task",
    "train_sequence",
    "trusted_zips",
]

"""What a search method is: a catalog key that builds an Optuna sampler or pruner for ``rlsurgery tune``
(``--sampler KEY[:p=v,...]`` / ``--pruner KEY[:p=v,...]``), and refuses to be applied to an agent."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from stable_baselines3.common.base_class import BaseAlgorithm

from rlsurgery.core.errors import IncompatibleSurgeryError
from rlsurgery.core.surgery import Attachment, Surgery

Role = Literal["sampler", "pruner"]


class SearchMethod(Surgery):
    """A way of searching over configurations (``rlsurgery tune``), not a change to an agent."""

    attaches_to = (Attachment.SEARCH,)
    families = ()
    #: the ``tune`` option that takes it
    role: ClassVar[Role] = "sampler"

    def validate(self, agent: BaseAlgorithm) -> None:
        raise IncompatibleSurgeryError(
            f"{self.key}: a search method of rlsurgery tune (--{self.role} {self.key}), "
            "not a change to an agent"
        )

    def check_space(self, space: Any) -> None:
        """Raise :class:`~rlsurgery.tune.space.TuneError` for a space it cannot search (before any trial)."""

    def build(self, space: Any, budget: Any, seed: int) -> Any:
        """The Optuna sampler (or pruner) for ``space`` (a :class:`~rlsurgery.tune.space.SearchSpace`),
        the trial ``budget`` (:class:`~rlsurgery.tune.objective.TrialBudget`) and the sampler ``seed``."""
        raise NotImplementedError


def require_architecture(key: str, space: Any) -> None:
    """Refuse a space without an ``architecture`` section, naming the method ``key``."""
    from rlsurgery.tune.space import TuneError

    if not getattr(space, "architecture", None):
        raise TuneError(
            f"{key}: searches architectures, and the space has no 'architecture' section "
            "(depth, width, activation, normalization, skip, dropout: lists of choices)"
        )

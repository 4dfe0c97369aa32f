"""What the surgical off-policy agents (SurgicalDQN, SurgicalSAC, SurgicalTD3) share.

* the **sample** stage: a :class:`~rlsurgery.core.batch.Batch` from the replay buffer, with the
  ``weights`` and ``indices`` fields of buffers that give them (prioritized replay) and the
  per-sample ``discounts`` γ^k of n-step buffers;
* replay buffers that compute n-step returns themselves (``supports_n_steps``: prioritized
  replay) receive ``n_steps`` and ``gamma``, so ``n_step_returns`` composes with them;
* the composable ``on_step`` stage after every environment step (SB3's ``_on_step``).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator

from rlsurgery.agents.surgical import SurgicalMixin
from rlsurgery.core.batch import Batch
from rlsurgery.core.errors import IncompatibleSurgeryError
from rlsurgery.replay.indices import sample_with_indices


class OffPolicySurgicalMixin(SurgicalMixin):
    """Mixed into SB3 ``OffPolicyAlgorithm`` subclasses (before the SB3 class)."""

    def _build_sb3_model(self) -> None:
        # replay surgeries that handle n-step returns receive n_steps and gamma themselves
        buffer_class = self.replay_buffer_class  # type: ignore[attr-defined]
        kwargs = self.replay_buffer_kwargs  # type: ignore[attr-defined]
        handles_n_steps = buffer_class is not None and getattr(buffer_class, "supports_n_steps", False)
        if handles_n_steps:
            kwargs.update({"n_steps": self.n_steps, "gamma": self.gamma})  # type: ignore[attr-defined]
        with warnings.catch_warnings():
            # the buffer already receives n_steps (ours above, or SB3's NStepReplayBuffer on load)
            if handles_n_steps or "n_steps" in kwargs:
                warnings.filterwarnings("ignore", message=r"`n_steps=\d+` is ignored")
            super()._build_sb3_model()

    def sample_batch(self, batch_size: int) -> Batch:
        """Sample stage: a :class:`Batch` from the replay buffer.

        Buffers that return ``weights`` (prioritized replay) fill that field; ``indices`` holds the
        flat indices ``pos * n_envs + env`` of the samples (see :mod:`rlsurgery.replay.indices`).
        """
        data, indices = sample_with_indices(self.replay_buffer, batch_size, self._vec_normalize_env)  # type: ignore[attr-defined]
        discounts = getattr(data, "discounts", None)
        return Batch(
            observations=data.observations,
            actions=data.actions,
            next_observations=data.next_observations,
            rewards=data.rewards,
            dones=data.dones,
            discounts=discounts if discounts is not None else self.gamma,  # type: ignore[attr-defined]
            weights=getattr(data, "weights", None),
            indices=indices,
        )

    def ready_for_loss(self, batch: Batch) -> Batch:
        """``batch`` (e.g. of stored transitions) made ready for :meth:`step_loss` (nothing to add here;
        SAC and TD3 set their critic target)."""
        return batch

    def training_batches(self, batch_size: int, key: str) -> Iterator[Batch]:
        """Endless augmented batches of the replay buffer (for the loss probes)."""
        buffer = self.replay_buffer  # type: ignore[attr-defined]
        if buffer is None or buffer.size() < batch_size:
            raise IncompatibleSurgeryError(
                f"{key}: the replay buffer holds fewer than {batch_size} transitions; train the agent "
                "first (or load its replay buffer)"
            )
        while True:
            batch = self.sample_batch(batch_size)
            self._pipeline.run_all("augment", self, batch)
            yield batch

    def _on_step(self) -> None:
        super()._on_step()  # type: ignore[misc]
        self._pipeline.run_all("on_step", self)

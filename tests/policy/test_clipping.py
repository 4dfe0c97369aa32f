from __future__ import annotations

import pytest
import torch as th

from rlsurgery import SurgicalA2C, SurgicalPPO
from rlsurgery.core.batch import PolicyBatch
from rlsurgery.core.errors import IncompatibleSurgeryError, ParameterError
from rlsurgery.policy.clipping import clipped_surrogate, clipped_value_loss


def test_clipped_objective_on_crafted_ratios_and_advantages():
    ratio = th.tensor([0.5, 1.0, 1.5, 3.0, 0.5, 1.5, 5.0])
    adv = th.tensor([1.0, 1.0, 1.0, 1.0, -1.0, -1.0, -1.0])
    eps = 0.2
    # per sample min(rA, clip(r)A): A>0 → min(r, clip(r)); A<0 → −max(r, clip(r))
    expected = th.tensor([0.5, 1.0, 1.2, 1.2, -0.8, -1.5, -5.0])
    th.testing.assert_close(clipped_surrogate(ratio, adv, eps), -expected.mean())
    # dual clip c = 3 bounds the negative-advantage terms from below by cA = −3
    dual = th.tensor([0.5, 1.0, 1.2, 1.2, -0.8, -1.5, -3.0])
    th.testing.assert_close(clipped_surrogate(ratio, adv, eps, dual_clip=3.0), -dual.mean())
    # value clipping: pessimistic max of the clipped and unclipped squared errors
    values, old, returns = th.tensor([1.0, 3.0]), th.tensor([0.0, 2.9]), th.tensor([2.0, 2.0])
    # sample 1: V − V_old = 1 clipped to 0.5 → (0.5 − 2)² = 2.25 > (1 − 2)² = 1; sample 2: (3 − 2)² = 1 > 0
    th.testing.assert_close(clipped_value_loss(values, old, returns, 0.5), th.tensor((2.25 + 1.0) / 2))


def test_schedule_reaches_the_loss_and_the_logs():
    model = SurgicalPPO(
        "MlpPolicy",
        "CartPole-v1",
        seed=0,
        n_steps=64,
        batch_size=32,
        surgeries=[
            "policy_gradient_clipping:schedule=linear,initial=0.3,final=0.1,fraction=1.0,dual_clip=2.0,value_clip=0.5"
        ],
    ).learn(128)
    data = next(model.rollout_buffer.get(32))
    batch = PolicyBatch.from_rollout(data, 0.2)
    model.compute_loss(batch)
    assert batch.clip_range == pytest.approx(0.1)  # the end of the run: progress remaining 0
    model._current_progress_remaining = 0.5
    model.compute_loss(batch)
    assert batch.clip_range == pytest.approx(0.2) and batch.clip_range_vf == 0.5
    expected = clipped_surrogate(batch.ratio, batch.advantages, 0.2, dual_clip=2.0)
    th.testing.assert_close(batch.policy_loss, expected)


def test_bad_parameters_and_agents_are_refused():
    with pytest.raises(ParameterError, match=r"'dual_clip' must be > 1\.0"):
        SurgicalPPO("MlpPolicy", "CartPole-v1", surgeries=["policy_gradient_clipping:dual_clip=0.5"])
    with pytest.raises(
        IncompatibleSurgeryError, match="policy_gradient_clipping: not available for SurgicalA2C"
    ):
        SurgicalA2C("MlpPolicy", "CartPole-v1", surgeries=["policy_gradient_clipping"])
    with pytest.raises(
        IncompatibleSurgeryError, match="'policy_gradient_clipping' and 'trust_region' both fill"
    ):
        SurgicalPPO("MlpPolicy", "CartPole-v1", surgeries=["policy_gradient_clipping", "trust_region"])

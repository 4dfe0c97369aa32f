"""The stages every surgical agent shares: aux_loss and before_step, and what moved onto them
(SAM, loss watchers, hard example mining, loss probes, prioritized replay and n-step returns)."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch as th
from stable_baselines3 import SAC, TD3
from stable_baselines3.common.logger import Logger

from rlsurgery import Surgery, SurgicalA2C, SurgicalDQN, SurgicalPPO, SurgicalSAC, SurgicalTD3, SurgicalTRPO
from rlsurgery.core.errors import IncompatibleSurgeryError
from rlsurgery.nets.step_hooks import optimizers_by_role
from rlsurgery.replay.prioritized import PrioritizedReplayBuffer

OFF = dict(learning_starts=30, batch_size=16, buffer_size=600, policy_kwargs=dict(net_arch=[12]))
ON = dict(policy_kwargs=dict(net_arch=[12]))

#: agent class, env, steps, settings, the loss roles its aux_loss stage asks for
AGENTS = {
    "dqn": (SurgicalDQN, "CartPole-v1", 90, dict(OFF, train_freq=1), {"q"}),
    "ppo": (
        SurgicalPPO,
        "CartPole-v1",
        64,
        dict(ON, n_steps=32, batch_size=16, n_epochs=2),
        {"policy", "value"},
    ),
    "a2c": (SurgicalA2C, "CartPole-v1", 40, dict(ON, n_steps=8), {"policy", "value"}),
    "sac": (SurgicalSAC, "Pendulum-v1", 60, OFF, {"critic", "actor"}),
    "td3": (SurgicalTD3, "Pendulum-v1", 60, OFF, {"critic", "actor"}),
    "trpo": (
        SurgicalTRPO,
        "CartPole-v1",
        64,
        dict(ON, n_steps=32, batch_size=16, n_critic_updates=2),
        {"value"},
    ),
}


def build(family, surgeries=(), **extra):
    cls, env_id, _, kwargs, _ = AGENTS[family]
    return cls("MlpPolicy", env_id, seed=1, surgeries=list(surgeries), **copy.deepcopy({**kwargs, **extra}))


def learn(family, surgeries=(), **extra):
    return build(family, surgeries, **extra).learn(AGENTS[family][2])


def parameters(model):
    return {k: v.clone() for k, v in model.policy.state_dict().items()}


class WeightPenalty(Surgery):
    """c · Σ θ² of every parameter, for every role it is asked about (a demo aux_loss surgery)."""

    key = "weight_penalty_demo"
    families = ("dqn", "ppo", "a2c", "sac", "td3", "trpo")
    stages = ("aux_loss",)

    def __init__(self, c=1.0):
        super().__init__()
        self.c, self.roles = c, set()

    def aux_loss(self, agent, role, batch):
        self.roles.add(role)
        return self.c * sum(p.pow(2).sum() for p in agent.policy.parameters())


class RecordingLogger(Logger):
    """SB3's logger, keeping every recorded value (dumps clear SB3's own table)."""

    def __init__(self):
        super().__init__(folder=None, output_formats=[])
        self.seen: dict[str, list] = {}

    def record(self, key, value, exclude=None):
        self.seen.setdefault(key, []).append(value)
        super().record(key, value, exclude)


def learn_logged(family, surgeries=(), **extra):
    model = build(family, surgeries, **extra)
    logger = RecordingLogger()
    model.set_logger(logger)
    return model.learn(AGENTS[family][2]), logger.seen


@pytest.mark.parametrize("family", list(AGENTS))
def test_aux_loss_terms_are_added_to_each_role_and_logged(family):
    plain = learn(family)
    penalty = WeightPenalty(c=1.0)
    penalised, seen = learn_logged(family, [penalty])
    assert penalty.roles == AGENTS[family][4]  # asked once per role of the agent's losses
    changed = [k for k, v in parameters(penalised).items() if not th.equal(v, parameters(plain)[k])]
    assert changed  # the term reached the gradients
    values = seen["train/aux/weight_penalty_demo"]
    assert values and all(v > 0 for v in values)
    # a zero term is a no-op, bit for bit: the stage itself leaves the update alone
    zero, seen = learn_logged(family, [WeightPenalty(c=0.0)])
    for key, value in parameters(zero).items():
        assert th.equal(value, parameters(plain)[key]), key
    assert set(seen["train/aux/weight_penalty_demo"]) == {0.0}


def test_an_aux_loss_on_one_network_shrinks_that_network():
    # SAC, as in the README: an L2 term on the first critic only, named by the surgery
    class CriticL2(Surgery):
        key = "critic_l2_demo"
        families = ("sac",)
        stages = ("aux_loss",)

        def aux_loss(self, agent, role, batch):
            if role != "critic":
                return None
            return {"critic_l2": 1.0 * sum(p.pow(2).sum() for p in agent.critic.qf0.parameters())}

    plain = learn("sac", learning_rate=3e-3)
    model, seen = learn_logged("sac", [CriticL2()], learning_rate=3e-3)
    norm = lambda m, net: sum(float(p.norm()) for p in getattr(m.critic, net).parameters())  # noqa: E731
    assert norm(model, "qf0") < 0.9 * norm(plain, "qf0")  # the penalised critic shrank
    assert norm(model, "qf1") > 0.95 * norm(plain, "qf1")  # its twin did not
    assert seen["train/aux/critic_l2"] and "train/aux/critic_l2_demo" not in seen


@pytest.mark.parametrize(
    "family, roles",
    [
        ("dqn", ["policy"]),
        ("sac", ["critic", "actor"]),
        ("td3", ["critic", "critic", "critic", "actor"]),  # the actor every policy_delay = 3 steps
        ("trpo", ["policy"]),
    ],
)
def test_before_step_receives_the_role_batch_and_loss_of_each_step(family, roles):
    class Recorder(Surgery):
        key = "recorder_demo"
        families = (family,)
        stages = ("before_step",)

        def __init__(self):
            super().__init__()
            self.calls = []

        def before_step(self, agent, role, batch, loss):
            grads = [p.grad for p in optimizers_by_role(agent)[role].param_groups[0]["params"]]
            # after backward (TRPO's value step drops the actor's gradients, so not every one)
            self.calls.append((role, batch, float(loss), any(g is not None for g in grads)))

    recorder = Recorder()
    model = build(family, [recorder], **({"gradient_steps": 3, "policy_delay": 3} if family == "td3" else {}))
    model.learn(AGENTS[family][2])
    assert recorder.calls and all(has_grad for *_, has_grad in recorder.calls)  # after backward
    seen = [role for role, *_ in recorder.calls]
    assert seen[: len(roles)] == roles
    assert all(np.isfinite(loss) for _, _, loss, _ in recorder.calls)


@pytest.mark.parametrize("family", ["sac", "td3", "a2c", "trpo"])
def test_sam_changes_every_agents_update(family):
    plain = learn(family)
    sam, seen = learn_logged(family, ["sam:rho=0.5"])
    assert any(not th.equal(v, parameters(plain)[k]) for k, v in parameters(sam).items())
    keys = ["train/sam_perturbed_loss_critic", "train/sam_perturbed_loss_actor"]
    for key in keys if family in ("sac", "td3") else ["train/sam_perturbed_loss"]:
        assert seen[key] and all(np.isfinite(seen[key])), key


def test_sam_on_sac_leaves_the_gradient_at_the_ascended_critic():
    model = build("sac", ["sam:rho=0.1"]).learn(40)
    batch = next(model.training_batches(16, "test"))  # target and α set
    params = [p for g in model.critic.optimizer.param_groups for p in g["params"]]
    loss = model.step_loss("critic", batch)
    model.critic.optimizer.zero_grad()
    loss.backward()
    g = [p.grad.clone() for p in params]
    origin = [p.detach().clone() for p in params]
    (sam,) = model.surgeries
    sam.before_step(model, "critic", batch, loss)
    left = [p.grad.clone() for p in params]
    assert all(th.equal(p, o) for p, o in zip(params, origin))  # θ itself back where it was
    norm = th.linalg.vector_norm(th.stack([th.linalg.vector_norm(x) for x in g]))
    with th.no_grad():  # ∇L at θ + ρ g/‖g‖, by hand
        for p, gi in zip(params, g):
            p.add_(0.1 * gi / norm)
    model.critic.optimizer.zero_grad()
    model.step_loss("critic", batch).backward()
    for a, b in zip(left, [p.grad for p in params]):
        th.testing.assert_close(a, b)
    assert not all(th.allclose(a, b) for a, b in zip(left, g))


def test_loss_spike_filtering_skips_a_spiking_critic_step_on_sac():
    model = build("sac", ["loss_spike_filtering:k=5,warmup=10"], train_freq=1)
    original = model.critic_loss_of
    state = {}

    def spiking(batch):
        loss = original(batch)
        if model.num_timesteps == 50:
            state["before"] = {n: p.detach().clone() for n, p in model.critic.named_parameters()}
            return loss * 1000
        return loss

    model.critic_loss_of = spiking
    model.learn(50)
    assert model.surgery_state["loss_spike_filtering"].events == 1
    after = dict(model.critic.named_parameters())
    assert all(th.equal(after[n].detach(), state["before"][n]) for n in state["before"])  # step skipped
    (surgery,) = model.surgeries
    assert set(surgery.state(model).averages) == {"critic", "actor"}  # one running average per role


def test_hard_example_mining_trains_the_critics_on_the_hardest_transitions():
    model = build("sac", ["hard_example_mining:factor=4"]).learn(40)
    assert model.batch_size == 64
    batch = model.sample_batch(64)
    batch.entropy_coef = model._entropy_coefficient_now()
    with th.no_grad():
        model._default_target(model, batch)
    model.critic_loss_of(batch)
    per_sample = batch.elementwise_loss.detach().sum(dim=1)
    kept = batch.weights > 0
    assert int(kept.sum()) == 16 and batch.weights[kept].eq(4.0).all()
    assert per_sample[kept].min() >= per_sample[~kept].max()


@pytest.mark.parametrize("parent, surgical", [(SAC, SurgicalSAC), (TD3, SurgicalTD3)])
def test_n_step_returns_on_sac_and_td3_equal_sb3_n_steps(parent, surgical):
    kwargs = dict(OFF, batch_size=20)
    ours = surgical(
        "MlpPolicy", "Pendulum-v1", seed=0, surgeries=["n_step_returns:n=3"], **copy.deepcopy(kwargs)
    )
    ours.learn(80)  # built and trained one after the other: both draw from torch's global generator
    theirs = parent("MlpPolicy", "Pendulum-v1", seed=0, n_steps=3, **copy.deepcopy(kwargs)).learn(80)
    for key, value in theirs.policy.state_dict().items():
        assert th.equal(value, ours.policy.state_dict()[key]), key


@pytest.mark.parametrize("family", ["sac", "td3"])
def test_prioritized_replay_on_sac_and_td3_writes_the_critics_td_error(family):
    model = build(family, ["prioritized_replay:alpha=1.0", "n_step_returns:n=2"]).learn(60)
    buffer = model.replay_buffer
    assert isinstance(buffer, PrioritizedReplayBuffer) and buffer.n_steps == 2
    batch = model.sample_batch(16)
    assert batch.weights is not None and batch.indices is not None
    batch.entropy_coef = model._entropy_coefficient_now()
    with th.no_grad():
        model._default_target(model, batch)
    model.critic_loss_of(batch)
    errors = th.cat([(batch.target - q).abs() for q in batch.current], dim=1).mean(dim=1)
    th.testing.assert_close(batch.td_error, errors.detach())
    model._pipeline.run_all("after_update", model, batch)
    indices = np.asarray(batch.indices)
    once = [i for i, index in enumerate(indices) if (indices == index).sum() == 1]  # drawn once
    leaves = buffer.tree.get(indices[once])
    np.testing.assert_allclose(leaves, (errors.detach().numpy()[once] + 1e-6) ** 1.0, rtol=1e-5)
    # weights scale the critics' loss: all-zero weights give a zero loss
    batch.weights = th.zeros_like(batch.weights)
    assert float(model.reduce_critic_loss(batch)) == 0.0


@pytest.mark.parametrize(
    "family, role", [("sac", "critic"), ("sac", "actor"), ("td3", "critic"), ("trpo", "")]
)
def test_loss_probes_run_on_every_agent_and_restore_it(family, role):
    import rlsurgery as rls

    model = learn(family)
    before = parameters(model)
    spec = (
        f"learning_rate_finder:steps=8,batch_size=16,role={role}" if role else "learning_rate_finder:steps=8"
    )
    rls.operate(model, spec)
    assert len(model.surgery_state["learning_rate_finder"].result["lrs"]) >= 3
    rls.operate(
        model, "loss_landscape_visualization:resolution=3,batch_size=16" + (f",role={role}" if role else "")
    )
    grid = np.asarray(model.surgery_state["loss_landscape_visualization"].result["losses"])
    assert grid.shape == (3, 3) and np.isfinite(grid).all() and grid.std() > 0
    for key, value in parameters(model).items():
        assert th.equal(value, before[key]), key
    with pytest.raises(IncompatibleSurgeryError, match="parameter 'role' must be one of"):
        rls.operate(model, "learning_rate_finder:role=q")


@pytest.mark.parametrize("family", ["dqn", "sac"])
def test_lr_finder_runs_its_whole_sweep_while_the_loss_stays_flat(family):
    # rates too small to move the loss: the smoothed loss stays at its best, so no early stop
    # (the EMA once started at L₀ and was then debiased as if started at 0: 5× L₀ at the second step)
    import rlsurgery as rls

    model = learn(family)
    rls.operate(model, "learning_rate_finder:lr_min=1e-9,lr_max=1e-8,steps=12,batch_size=16")
    assert len(model.surgery_state["learning_rate_finder"].result["lrs"]) == 12


def test_a_family_a_surgery_refuses_is_refused_with_its_reason():
    with pytest.raises(
        IncompatibleSurgeryError,
        match="hard_example_mining: not available for SurgicalPPO "
        r"\(an on-policy update uses each rollout sample as collected.*supports: dqn, sac, td3\)",
    ):
        build("ppo", ["hard_example_mining"])


@pytest.mark.parametrize(
    "family, specs",
    [
        ("sac", ["prioritized_replay", "n_step_returns:n=3", "sam", "loss_spike_filtering"]),
        ("td3", ["prioritized_replay", "hard_example_mining:factor=2", "checkpoint_rollback:every=20"]),
        ("sac", ["learning_rate_reduction", "hard_example_mining"]),
    ],
)
def test_the_surgeries_new_on_sac_and_td3_survive_save_and_load(family, specs, tmp_path):
    import rlsurgery as rls

    model = learn(family, specs)
    model.save(tmp_path / "m.zip")
    loaded = rls.load(tmp_path / "m.zip")
    assert [s.key for s in loaded.surgeries] == [s.split(":")[0] for s in specs]
    assert type(loaded.replay_buffer) is type(model.replay_buffer) and loaded.batch_size == model.batch_size
    obs = np.random.default_rng(0).normal(size=(8, 3)).astype(np.float32)
    np.testing.assert_array_equal(
        model.predict(obs, deterministic=True)[0], loaded.predict(obs, deterministic=True)[0]
    )
    loaded.set_env(model.get_env())
    loaded.learn(20, reset_num_timesteps=False)  # and trains on

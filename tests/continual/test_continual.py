"""Continual learning: task switches, the Continual World metrics, EWC, LwF and memory replay."""

from __future__ import annotations

import numpy as np
import pytest
import torch as th

import rlsurgery as rls
from rlsurgery.bench import continual as metrics
from rlsurgery.continual import (
    ewc,
    gradient_episodic_memory,
    learning_without_forgetting,
    memory_replay,
    progressive_neural_networks,
)
from rlsurgery.runtime.callbacks import EveryStep
from rlsurgery.runtime.tasks import Task, current_task, on_task, switch_task, train_sequence
from tests.breakage import assert_proof_fails_when, replaced

th.set_num_threads(1)

TASKS = [
    Task("rlsurgery/Permuted-v0", 300, {"env_id": "CartPole-v1", "task": i}, f"permuted-{i}")
    for i in range(3)
]
DQN_KW = dict(
    learning_starts=50, buffer_size=1_000, batch_size=16, train_freq=1, policy_kwargs=dict(net_arch=[16])
)


def dqn(surgeries, **kwargs):
    return rls.SurgicalDQN(
        "MlpPolicy", TASKS[0].make_env(0), seed=0, surgeries=surgeries, **{**DQN_KW, **kwargs}
    )


def after_first_task(surgeries, **kwargs):
    """A DQN trained on task 0 and switched to task 1."""
    model = dqn(surgeries, **kwargs).learn(300)
    switch_task(model, TASKS[1].make_env(1), 1)
    return model


# ---------------------------------------------------------------------------------------- task switches
def test_a_switch_tells_the_surgeries_first_then_changes_env_and_empties_the_replay(tmp_path, capsys):
    seen = []

    class Watcher(rls.Surgery):
        key = "watcher"
        families = ("dqn",)

        def on_task_switch(self, agent, switch):
            seen.append(
                (switch.ended, switch.starting, switch.step, agent.replay_buffer.size(), agent.get_env())
            )

    model = dqn([Watcher()]).learn(300)
    old_env, new_env = model.get_env(), TASKS[1].make_env(1)
    switch_task(model, new_env, 1)
    assert seen == [(0, 1, 300, 300, old_env)]
    assert model.replay_buffer.size() == 0 and model.get_env() is not old_env and current_task(model) == 1
    with on_task(model, 0):
        assert current_task(model) == 0
    assert current_task(model) == 1
    plain = dqn([]).learn(300)  # (a custom surgery does not reload: it is not in the catalog)
    switch_task(plain, TASKS[1].make_env(1), 1)
    plain.save(tmp_path / "m.zip")
    loaded = rls.SurgicalDQN.load(tmp_path / "m.zip")
    assert loaded.rls_task == 1 and loaded.rls_task_log == [{"task": 1, "from": 0, "step": 300}]
    from rlsurgery.cli import main

    assert main(["inspect", str(tmp_path / "m.zip")]) == 0
    assert "task switches        task 0 → 1 at step 300" in capsys.readouterr().out
    with pytest.raises(ValueError, match=r"task 2: its observation space .* differs from the agent's"):
        switch_task(model, Task("Acrobot-v1", 10).make_env(0), 2)


def test_train_sequence_evaluates_every_task_and_gives_the_matrix():
    model = dqn([])
    result = train_sequence(model, TASKS, seed=0, eval_freq=150, eval_episodes=1)
    assert result.curve_steps == [0, 150, 300, 450, 600, 750, 900]
    assert result.boundaries == [300, 600, 900]
    assert np.asarray(result.curves).shape == (7, 3)
    assert result.matrix().shape == (3, 3) and model.rls_task == 2
    np.testing.assert_array_equal(result.matrix()[1], result.curves[4])


def test_continual_world_metrics_on_a_hand_case():
    # two tasks of 100 steps, evaluated at 0, 50, 100, 150, 200
    steps = [0, 50, 100, 150, 200]
    curves = np.array([[0.0, 0.0], [0.4, 0.0], [0.8, 0.1], [0.6, 0.5], [0.5, 0.9]])
    result = metrics.sequence_metrics(steps, curves, [100, 200], reference_aucs=[0.2, 0.5])
    np.testing.assert_allclose(result.matrix, [[0.8, 0.1], [0.5, 0.9]])
    assert result.average_performance == pytest.approx(0.7)
    np.testing.assert_allclose(result.forgetting_per_task, [0.3, 0.0])
    assert result.forgetting == pytest.approx(0.15)
    # AUC_1 = trapezoids of 0, 0.4, 0.8 over [0, 100] / 100 = 0.4; AUC_2 over [100, 200] of 0.1, 0.5, 0.9 = 0.5
    np.testing.assert_allclose(result.auc_per_task, [0.4, 0.5])
    np.testing.assert_allclose(result.forward_transfer_per_task, [(0.4 - 0.2) / 0.8, 0.0])
    assert np.isnan(metrics.forward_transfer(0.5, 1.0))
    np.testing.assert_allclose(metrics.normalized([[10.0, 0.0]], [0.0, -100.0], [100.0, 100.0]), [[0.1, 0.5]])


# ---------------------------------------------------------------------------------------- EWC
def check_ewc():
    theta = th.tensor([1.0, 2.0], requires_grad=True)
    penalty = ewc.ewc_penalty(
        [("w", theta)], [{"w": th.zeros(2)}], [{"w": th.tensor([2.0, 3.0])}], strength=4.0
    )  # (4/2)(2·1² + 3·2²) = 28; gradient λ F (θ − θ*) = (8, 24)
    assert penalty is not None and float(penalty.detach()) == pytest.approx(28.0)
    (grad,) = th.autograd.grad(penalty, theta)
    th.testing.assert_close(grad, th.tensor([8.0, 24.0]))
    # on an agent: θ* is the pre-switch weights, and a strong pull keeps them where a weak one does not
    distances = {}
    for strength in (0.0, 1e5):
        model = dqn(
            [f"elastic_weight_consolidation:strength={strength},samples=16"], learning_rate=1e-3
        ).learn(300)
        before = {n: p.detach().clone() for n, p in model.policy.named_parameters()}
        switch_task(model, TASKS[1].make_env(1), 1)
        state = model.surgery_state["elastic_weight_consolidation"]
        assert all(th.equal(state.anchors[0][n], before[n]) for n in state.anchors[0])
        model.learn(300, reset_num_timesteps=False)
        fisher = state.fishers[0]  # the distance EWC weighs: Σ F_i (θ_i − θ*_i)²
        distances[strength] = sum(
            float((fisher[n] * (p - before[n]) ** 2).sum())
            for n, p in model.policy.named_parameters()
            if n in fisher
        )
    assert distances[1e5] < 0.1 * distances[0.0], distances


def test_ewc_penalty_and_its_gradient_on_a_hand_case():
    check_ewc()


def test_ewc_proof_fails_without_the_penalty():
    assert_proof_fails_when(replaced(ewc, "ewc_penalty", lambda *args, **kwargs: None), check_ewc)
    # the hand case holds, but the agent's loss never gets the penalty
    assert_proof_fails_when(
        replaced(ewc.ElasticWeightConsolidation, "aux_loss", lambda self, agent, role, batch: None), check_ewc
    )


def test_the_fisher_is_the_mean_squared_gradient_of_the_taken_actions_value():
    model = dqn([]).learn(200)
    obs = th.randn(3, 4)
    actions = th.tensor([[0], [1], [1]])
    fisher = ewc.diagonal_fisher(model, obs, actions)
    expected = {n: th.zeros_like(p) for n, p in model.policy.named_parameters()}
    for i in range(3):
        model.policy.zero_grad()
        model.q_net(obs[i : i + 1])[0, actions[i, 0]].backward()
        for n, p in model.policy.named_parameters():
            if p.grad is not None:
                expected[n] += p.grad**2 / 3
    for name, value in fisher.items():
        th.testing.assert_close(value, expected[name])
    assert float(fisher["q_net.q_net.0.weight"].sum()) > 0


def test_online_ewc_keeps_one_decayed_fisher():
    model = after_first_task(["elastic_weight_consolidation:online=True,gamma=0.5,samples=8"])
    first = {n: f.clone() for n, f in model.surgery_state["elastic_weight_consolidation"].fishers[0].items()}
    model.learn(200, reset_num_timesteps=False)
    surgery = model.surgeries[0]
    obs, actions = ewc.old_task_samples(model, 8, "x")
    new = ewc.diagonal_fisher(model, obs, actions)
    switch_task(model, TASKS[2].make_env(2), 2)
    state = model.surgery_state["elastic_weight_consolidation"]
    assert len(state.fishers) == 1 and len(state.anchors) == 1 and surgery.params.online
    name = "q_net.q_net.0.weight"
    th.testing.assert_close(state.fishers[0][name], 0.5 * first[name] + new[name])


def test_ewc_works_on_ppo_and_sac():
    for cls, env, kwargs in (
        (rls.SurgicalPPO, "CartPole-v1", dict(n_steps=64, batch_size=32, n_epochs=1)),
        (rls.SurgicalSAC, "Pendulum-v1", dict(learning_starts=50, buffer_size=500, batch_size=16)),
    ):
        model = cls("MlpPolicy", env, seed=0, surgeries=["elastic_weight_consolidation:samples=8"], **kwargs)
        model.learn(128)
        switch_task(model, model.get_env(), 1)
        fishers = model.surgery_state["elastic_weight_consolidation"].fishers[0]
        assert fishers and all(bool(th.isfinite(f).all()) for f in fishers.values())
        model.learn(128, reset_num_timesteps=False)
        assert model.logger.name_to_value is not None


# ---------------------------------------------------------------------------------------- LwF
def check_lwf():
    gaps = {}
    obs = th.as_tensor(np.random.default_rng(0).normal(size=(64, 4)).clip(-2, 2), dtype=th.float32)
    for weight in (0.0, 100.0):
        model = after_first_task([f"learning_without_forgetting:weight={weight}"])
        teacher = model.rls_modules["learning_without_forgetting"]
        with th.no_grad():
            th.testing.assert_close(teacher.q_net(obs), model.q_net(obs), rtol=0, atol=0)
        model.learn(400, reset_num_timesteps=False)
        with th.no_grad():
            gaps[weight] = float((model.q_net(obs) - teacher.q_net(obs)).pow(2).mean())
    assert gaps[100.0] < 0.2 * gaps[0.0], gaps
    logits_old, logits_new = th.tensor([[1.0, 0.0]]), th.tensor([[0.0, 1.0]])
    p = th.softmax(logits_old / 2, -1)
    q = th.softmax(logits_new / 2, -1)
    expected = 4 * float((p * (p.log() - q.log())).sum())
    term = learning_without_forgetting.distillation_term(logits_old, logits_new, True, 2.0)
    assert float(term) == pytest.approx(expected)


def test_lwf_pulls_the_outputs_towards_the_pre_switch_model():
    check_lwf()


def test_lwf_proof_fails_when_nothing_is_distilled():
    assert_proof_fails_when(
        replaced(learning_without_forgetting, "distillation_term", lambda old, new, c, t: 0.0 * new.sum()),
        check_lwf,
    )


# ---------------------------------------------------------------------------------------- memory replay
def check_memory_replay():
    model = dqn(["memory_replay:per_task=100,ratio=0.25"]).learn(300)
    old_obs = model.replay_buffer.observations[:300, 0].copy()
    switch_task(model, TASKS[1].make_env(1), 1)
    state = model.surgery_state["memory_replay"]
    assert len(state.task_of) == 100 and set(state.task_of.tolist()) == {0}
    stored = {tuple(o) for o in state.memory["observations"]}
    assert stored <= {tuple(o) for o in old_obs}
    model.learn(100, reset_num_timesteps=False)  # the new task's buffer
    batch = model.sample_batch(16)
    model._pipeline.run_all("augment", model, batch)
    rows = [tuple(o) for o in batch.observations.numpy()]
    assert all(r in stored for r in rows[:4]), "the first ρ·B = 4 rows come from the memory"
    assert not any(r in stored for r in rows[4:]), "the rest from the current task"
    assert memory_replay.mixed_rows(16, 0.25, 0) == 0


def test_memory_replay_mixes_old_transitions_at_the_ratio():
    check_memory_replay()


def test_memory_replay_proof_fails_without_mixing():
    assert_proof_fails_when(
        replaced(memory_replay, "mixed_rows", lambda batch_size, ratio, stored: 0), check_memory_replay
    )


# ---------------------------------------------------------------------------------------- saved mid-sequence
@pytest.mark.parametrize(
    "spec",
    [
        "elastic_weight_consolidation:samples=8",
        "learning_without_forgetting",
        "memory_replay:per_task=50",
        "gradient_episodic_memory:per_task=50",
    ],
)
def test_a_model_saved_mid_sequence_reloads_what_its_surgery_kept(spec, tmp_path):
    model = after_first_task([spec])
    model.learn(100, reset_num_timesteps=False)
    model.save(tmp_path / "m.zip")
    loaded = rls.load(tmp_path / "m.zip", env=model.get_env())
    key = spec.split(":")[0]
    for name, value in vars(model.surgery_state[key]).items():
        restored = getattr(loaded.surgery_state.get_or_create(key, type(model.surgery_state[key])), name)
        if isinstance(value, dict):
            assert value.keys() == restored.keys()
            for k in value:
                np.testing.assert_array_equal(np.asarray(value[k]), np.asarray(restored[k]))
        elif isinstance(value, list):
            assert len(value) == len(restored) > 0, name
            for a, b in zip(value, restored):
                assert a.keys() == b.keys() and all(th.equal(a[n], b[n]) for n in a)
        else:
            np.testing.assert_array_equal(np.asarray(value), np.asarray(restored))
    for name, tensor in model.rls_modules.state_dict().items():
        assert th.equal(tensor, loaded.rls_modules.state_dict()[name]), name
    obs = np.random.default_rng(0).normal(size=(16, 4)).astype(np.float32)
    np.testing.assert_array_equal(
        model.predict(obs, deterministic=True)[0], loaded.predict(obs, deterministic=True)[0]
    )
    loaded.learn(50, reset_num_timesteps=False)  # and it trains on


# ---------------------------------------------------------------------------------------- GEM / A-GEM
def test_the_projections_satisfy_every_constraint_and_move_the_gradient_least():
    generator = th.Generator().manual_seed(0)
    memories = th.randn(3, 10, generator=generator)
    g = -memories.sum(0) + 0.1 * th.randn(10, generator=generator)  # against all three
    z = gradient_episodic_memory.gem_projection(g, memories)
    assert bool((memories @ z >= -1e-6).all())
    # KKT: z − g = Gᵀv with v ≥ 0 and v_k = 0 where the constraint is slack
    v = th.linalg.lstsq(memories.T.double(), (z - g).double().unsqueeze(1)).solution.squeeze(1)
    assert bool((v >= -1e-6).all())
    assert all(abs(float(v[k])) < 1e-6 for k in range(3) if float(memories[k] @ z) > 1e-5)
    positive, untouched = memories.abs(), g.abs()  # no conflict: nothing to project
    assert th.equal(gradient_episodic_memory.gem_projection(untouched, positive), untouched)
    reference = memories[0]
    a = gradient_episodic_memory.agem_projection(-reference + 0.01 * memories[1], reference)
    assert float(a @ reference) == pytest.approx(0.0, abs=1e-5)
    assert th.equal(gradient_episodic_memory.agem_projection(reference, reference), reference)


def check_gem(variant):
    model = dqn([f"gradient_episodic_memory:variant={variant},per_task=64,batch_size=64"]).learn(300)
    switch_task(model, TASKS[1].make_env(1), 1)
    model.learn(200, reset_num_timesteps=False)
    assert "train/gem_projected" in model.logger.name_to_value, "the before_step stage ran while training"
    switch_task(model, TASKS[2].make_env(2), 2)
    surgery = model.surgeries[0]
    assert sorted(set(model.surgery_state[surgery.key].task_of.tolist())) == [0, 1]
    parameters = [p for p in model.q_net.parameters()]
    np.random.seed(3)
    memories = surgery.reference_gradients(model, "policy", parameters)
    assert len(memories) == (2 if variant == "gem" else 1)
    conflicting = -memories.sum(0)  # an update that would raise every old task's loss
    offset = 0
    for p in parameters:
        p.grad = conflicting[offset : offset + p.numel()].view_as(p).clone()
        offset += p.numel()
    np.random.seed(3)  # the hook draws the same memory batches
    surgery.before_step(model, "policy", None, None)
    projected = th.cat([p.grad.reshape(-1) for p in parameters])
    scale = float(memories.norm(dim=1).max() * conflicting.norm())
    assert bool((memories @ projected >= -1e-5 * scale).all()), memories @ projected


@pytest.mark.parametrize("variant", ["agem", "gem"])
def test_gem_projection_does_not_raise_any_old_tasks_loss(variant):
    check_gem(variant)


def test_gem_proof_fails_without_the_projection():
    gem = gradient_episodic_memory
    for variant, name, identity in (
        ("agem", "agem_projection", lambda g, reference: g),
        ("gem", "gem_projection", lambda g, memories: g),
    ):
        assert_proof_fails_when(replaced(gem, name, identity), check_gem, variant)


# ---------------------------------------------------------------------------------------- PackNet
def check_packnet(tmp_path):
    model = dqn(["packnet:prune_fraction=0.5"]).learn(300)
    layer = model.q_net.q_net[0]
    free_before = int((layer.packnet_owner < 0).sum())
    switch_task(model, TASKS[1].make_env(1), 1)
    owner = layer.packnet_owner
    assert int((owner == 0).sum()) == round(0.5 * free_before)  # task 0 keeps half of the layer
    assert bool((layer.weight_orig[owner < 0] == 0).all())  # the released half is zeroed
    obs = th.as_tensor(np.random.default_rng(1).normal(size=(32, 4)), dtype=th.float32)
    with th.no_grad(), on_task(model, 0):
        old_task = model.q_net(obs).clone()
    with th.no_grad():
        new_task_before = model.q_net(obs).clone()
    model.learn(300, reset_num_timesteps=False)
    with th.no_grad(), on_task(model, 0):
        th.testing.assert_close(model.q_net(obs), old_task, rtol=0, atol=0)
    with th.no_grad():
        assert not th.equal(model.q_net(obs), new_task_before), "task 1 trained its free weights"
    model.save(tmp_path / "packnet.zip")
    loaded = rls.load(tmp_path / "packnet.zip")
    assert th.equal(loaded.q_net.q_net[0].packnet_owner, owner)
    with th.no_grad(), on_task(loaded, 0):
        th.testing.assert_close(loaded.q_net(obs), old_task, rtol=0, atol=0)


def test_packnet_keeps_old_task_outputs_bit_identical(tmp_path):
    check_packnet(tmp_path)


def test_packnet_proof_fails_without_the_per_task_mask_or_the_frozen_weights(tmp_path):
    from rlsurgery.continual import packnet

    everything = lambda owner, acting, packed: th.ones_like(owner, dtype=th.float32)  # noqa: E731
    assert_proof_fails_when(replaced(packnet, "task_mask", everything), check_packnet, tmp_path)
    assert_proof_fails_when(
        replaced(
            packnet, "keep_largest_free", lambda weight, owner, kept: th.zeros_like(owner, dtype=th.bool)
        ),
        check_packnet,
        tmp_path,
    )


def test_packnet_refuses_weight_decay_and_pruning():
    with pytest.raises(rls.IncompatibleSurgeryError, match="packnet: the policy optimizer's weight decay"):
        dqn(["packnet"], policy_kwargs=dict(net_arch=[16], optimizer_kwargs=dict(weight_decay=1e-4)))
    with pytest.raises(rls.IncompatibleSurgeryError, match=r"weight decay \(0.01\)"):
        dqn(["packnet"], policy_kwargs=dict(net_arch=[16], optimizer_class=th.optim.AdamW))
    for other in ("batch_normalization", "weight_decay_modification", "progressive_neural_networks"):
        with pytest.raises(rls.IncompatibleSurgeryError, match="does not compose with"):
            dqn(["packnet", other])
    with pytest.raises(rls.IncompatibleSurgeryError, match="does not compose with weight_pruning"):
        dqn(["packnet", "weight_pruning"])


# ---------------------------------------------------------------------------------------- progressive nets
def check_progressive(tmp_path):
    model = dqn(["progressive_neural_networks"]).learn(300)
    obs = th.as_tensor(np.random.default_rng(2).normal(size=(32, 4)), dtype=th.float32)
    with th.no_grad():
        before = model.q_net(obs).clone()
    switch_task(model, TASKS[1].make_env(1), 1)
    (stack,) = [
        m for m in model.q_net.modules() if isinstance(m, progressive_neural_networks.ProgressiveColumns)
    ]
    assert len(stack.columns) == 2 and len(stack.laterals) == 1
    with th.no_grad():
        th.testing.assert_close(model.q_net(obs), before, rtol=0, atol=0)  # the new column starts as the old
    assert not any(p.requires_grad for p in stack.columns[0].parameters())
    model.learn(300, reset_num_timesteps=False)
    with th.no_grad(), on_task(model, 0):
        th.testing.assert_close(model.q_net(obs), before, rtol=0, atol=0)  # task 0: its frozen column
    with th.no_grad():
        assert not th.equal(model.q_net(obs), before), "the new column trained"
    assert any(float(lateral.weight.detach().abs().sum()) > 0 for lateral in stack.laterals[0])
    model.save(tmp_path / "progressive.zip")
    loaded = rls.load(tmp_path / "progressive.zip")
    with th.no_grad():
        th.testing.assert_close(loaded.q_net(obs), model.q_net(obs), rtol=0, atol=0)
        with on_task(loaded, 0):
            th.testing.assert_close(loaded.q_net(obs), before, rtol=0, atol=0)


def test_progressive_columns_freeze_old_tasks_and_start_as_the_old_function(tmp_path):
    check_progressive(tmp_path)


def test_progressive_proof_fails_when_old_columns_train_or_the_task_is_ignored(tmp_path):
    columns = progressive_neural_networks.ProgressiveColumns
    original_add = columns.add_column

    def add_unfrozen(self):
        original_add(self)
        self.requires_grad_(True)

    assert_proof_fails_when(replaced(columns, "add_column", add_unfrozen), check_progressive, tmp_path)
    original_forward = columns.forward

    def latest_column(self, x):
        self.task_of = lambda: len(self.columns) - 1
        return original_forward(self, x)

    assert_proof_fails_when(replaced(columns, "forward", latest_column), check_progressive, tmp_path)


def test_progressive_columns_on_td3_and_refused_where_heads_read_the_mlp():
    tasks = [Task("rlsurgery/Shifted-v0", 120, {"env_id": "Pendulum-v1", "offset": o}) for o in (0.0, 0.5)]
    model = rls.SurgicalTD3(
        "MlpPolicy",
        tasks[0].make_env(0),
        seed=0,
        surgeries=["progressive_neural_networks"],
        learning_starts=50,
        buffer_size=500,
        batch_size=16,
        policy_kwargs=dict(net_arch=[16]),
    )
    train_sequence(model, tasks, eval_freq=120, eval_episodes=1)
    stacks = [
        m for m in model.policy.modules() if isinstance(m, progressive_neural_networks.ProgressiveColumns)
    ]
    assert len(stacks) == 6 and all(
        len(s.columns) == 2 for s in stacks
    )  # actor, 2 critics, and their targets
    with pytest.raises(
        rls.IncompatibleSurgeryError, match="progressive_neural_networks: not available for SurgicalPPO"
    ):
        rls.SurgicalPPO("MlpPolicy", "CartPole-v1", surgeries=["progressive_neural_networks"])


def test_a_switch_restarts_the_schedules_and_learning_starts_and_empties_prioritized_replay():
    model = dqn(["prioritized_replay"], exploration_fraction=0.5).learn(300)
    assert model.exploration_rate == pytest.approx(0.05)
    switch_task(model, TASKS[1].make_env(1), 1)
    assert model.learning_starts == 350 and model.rls_learning_starts == 50
    updates, seen = model._n_updates, []

    def watch(m):
        seen.append((m.num_timesteps, m.exploration_rate, m._n_updates))

    model.learn(300, reset_num_timesteps=False, callback=EveryStep(watch))
    assert seen[1][1] > 0.95 and seen[-1][1] == pytest.approx(0.05), "ε runs its schedule again on the task"
    assert all(n == updates for step, _, n in seen if step <= 350), "no update before learning_starts"
    assert seen[-1][2] > updates
    batch = model.sample_batch(64)
    assert int(batch.indices.max()) < model.replay_buffer.size(), (
        "only the new task's transitions are sampled"
    )
    plain, seen = dqn([], exploration_fraction=0.5).learn(300), []
    switch_task(plain, TASKS[1].make_env(1), 1, restart_schedules=False)
    plain.learn(300, reset_num_timesteps=False, callback=EveryStep(watch))
    assert seen[1][1] < 0.5, "without the restart, ε goes on from where it was"


def test_progressive_columns_refuse_surgeries_that_read_one_latent_layer():
    with pytest.raises(rls.IncompatibleSurgeryError, match="does not compose with feature_alignment"):
        dqn(["progressive_neural_networks", "feature_alignment:target_env=CartPole-v1"])

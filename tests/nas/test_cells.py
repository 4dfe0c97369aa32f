from __future__ import annotations

import copy

import pytest
import torch as th
from stable_baselines3.common.callbacks import BaseCallback
from torch import nn

from rlsurgery import SurgicalDQN, SurgicalPPO
from rlsurgery.core.errors import SurgeryError
from rlsurgery.nas import darts, enas, supernet
from rlsurgery.nets import cells
from rlsurgery.nets.cells import Cell, SearchCell, search_cells
from tests.breakage import assert_proof_fails_when, replaced


def dqn(spec: str, **kwargs) -> SurgicalDQN:
    args = dict(
        seed=0, learning_starts=50, train_freq=1, batch_size=32, policy_kwargs=dict(net_arch=[16, 16])
    )
    return SurgicalDQN("MlpPolicy", "CartPole-v1", surgeries=[spec], **{**args, **kwargs})


class StopAt(BaseCallback):
    def __init__(self, step: int) -> None:
        super().__init__()
        self.step = step

    def _on_step(self) -> bool:
        return self.num_timesteps < self.step


def cells_of(module: nn.Module, kind: type) -> list:
    return [m for m in module.modules() if isinstance(m, kind)]


# --------------------------------------------------------------------------- cell_based_nas
def check_the_cell_computes_its_genotype_and_repeats():
    model = dqn("cell_based_nas:operations=[linear_tanh,identity,zero],nodes=2,repeats=2")
    seq = model.q_net.q_net
    assert [type(m) for m in seq] == [nn.Linear, nn.ReLU, Cell, Cell, nn.Linear]  # stem, 2 cells, output
    first, second = seq[2], seq[3]
    assert first.genotype == ["linear_tanh", "identity", "zero"] and first.edges[0] is not second.edges[0]
    x = th.randn(32, 4)
    with th.no_grad():
        h = th.relu(seq[0](x))
        for cell in (first, second):  # h1 = tanh(W h0 + b); h2 = h0 + 0 · h1; out = (h1 + h2) / 2
            linear = cell.edges[0][0]
            h1 = th.tanh(h @ linear.weight.T + linear.bias)
            h = (h1 + h) / 2
        expected = seq[4](h)
        th.testing.assert_close(model.q_net(x), expected)
        th.testing.assert_close(model.q_net_target(x), expected)  # the target starts as a copy


def test_the_cell_computes_its_genotype_and_repeats():
    check_the_cell_computes_its_genotype_and_repeats()


@pytest.mark.parametrize(
    "breakage",
    [
        replaced(cells, "run_cell", lambda x, nodes, edge: edge(0, x)),  # the first edge only
        replaced(
            cells, "make_operation", lambda name, width: nn.Sequential(nn.Linear(width, width), nn.ReLU())
        ),
    ],
    ids=["one-edge", "genotype-ignored"],
)
def test_the_cell_proof_fails_when_broken(breakage):
    assert_proof_fails_when(breakage, check_the_cell_computes_its_genotype_and_repeats)


@pytest.mark.slow
def test_actor_critic_networks_get_cells_too():
    model = SurgicalPPO(
        "MlpPolicy",
        "CartPole-v1",
        seed=0,
        surgeries=["cell_based_nas:repeats=3"],
        policy_kwargs=dict(net_arch=[8]),
    )
    assert len(cells_of(model.policy, Cell)) == 6  # three in the policy MLP, three in the value MLP
    model.learn(256)


# --------------------------------------------------------------------------- darts
def weights_of(module: nn.Module) -> dict[str, th.Tensor]:
    return {n: p.detach().clone() for n, p in module.named_parameters() if not n.endswith("alpha")}


def check_darts():
    model = dqn("darts:arch_lr=0.05,discretize_at=1.0")
    model.learn(400, callback=StopAt(200))
    surgery = model._surgeries[0]
    (cell,) = search_cells(model.q_net)  # one cell (repeats=1), still searching
    assert surgery.state(model).arch_steps > 100
    assert float(cell.alpha.abs().max()) > 0.01  # α learnt
    # the weight update leaves α alone: it gets no gradient there
    alpha = cell.alpha.detach().clone()
    model.policy.optimizer.zero_grad()
    model.compute_loss(model.sample_batch(32)).backward()
    assert cell.alpha.grad is None
    model.policy.optimizer.step()
    th.testing.assert_close(cell.alpha.detach(), alpha)
    # the architecture step moves α only, downhill on the held-out loss (a fixed batch here, and a
    # fresh Adam, whose first step is −lr · sign(∂L/∂α))
    held_out = model.sample_batch(64)
    surgery.held_out_loss = lambda agent: agent.compute_loss(held_out)
    surgery.state(model).optimizer = th.optim.Adam([cell.alpha], lr=0.01)  # fresh, without weight decay
    cell.alpha.requires_grad_(True)
    (grad,) = th.autograd.grad(model.compute_loss(held_out), [cell.alpha])
    cell.alpha.requires_grad_(False)
    before = weights_of(model.q_net)
    surgery.architecture_step(model)
    step = cell.alpha.detach() - alpha
    assert float((step * grad).sum()) < 0  # a descent step
    assert bool((step.sign() == -grad.sign())[grad.abs() > 1e-7].all())
    for name, value in weights_of(model.q_net).items():
        th.testing.assert_close(value, before[name])
    # discretization keeps the argmax operations (zero left out) and their trained weights
    with th.no_grad():
        cell.alpha.copy_(th.randn_like(cell.alpha))
        cell.alpha[:, cell.candidates.index("zero")] = 10.0  # zero would win: it is never kept
    expected = [
        max(
            (o for o, name in enumerate(cell.candidates) if name != "zero"),
            key=lambda o: float(cell.alpha[e, o]),
        )
        for e in range(len(cell.alpha))
    ]
    x = th.randn(64, 4)
    for search_cell in (cell, *search_cells(model.q_net_target)):
        search_cell.set_child(expected)  # the supernets running exactly those operations
    with th.no_grad():
        before_q, before_target = model.q_net(x), model.q_net_target(x)
    chosen = surgery.discretize(model)
    assert chosen == [expected] and surgery.params.chosen == [expected]
    (discrete,) = cells_of(model.q_net, Cell)
    assert discrete.genotype == [cell.candidates[o] for o in expected]
    assert not search_cells(model.q_net) and not search_cells(model.q_net_target)
    with th.no_grad():
        th.testing.assert_close(model.q_net(x), before_q)
        th.testing.assert_close(model.q_net_target(x), before_target)


def test_darts_steps_alpha_on_held_out_batches_and_keeps_the_argmax():
    check_darts()


@pytest.mark.parametrize(
    "breakage",
    [
        replaced(darts.Darts, "architecture_step", lambda self, agent: None),
        replaced(  # uphill
            darts.Darts,
            "architecture_step",
            lambda self, agent: self.step_architecture(agent, lambda: -self.held_out_loss(agent)),
        ),
        replaced(darts, "argmax_genotype", lambda cell: cell.alpha.detach().argmin(dim=1).tolist()),
        replaced(
            supernet,
            "discretize",
            lambda cell, choice: Cell(cell.width, [cell.candidates[c] for c in choice], cell.nodes),
        ),  # fresh weights
    ],
    ids=["no-architecture-step", "uphill", "argmin", "weights-dropped"],
)
def test_the_darts_proof_fails_when_broken(breakage):
    assert_proof_fails_when(breakage, check_darts)


def test_a_discretized_darts_agent_reloads_its_cells(tmp_path):
    model = dqn("darts:discretize_at=0.5")
    model.learn(200)
    assert cells_of(model.q_net, Cell) and not search_cells(model.q_net)
    model.save(tmp_path / "darts.zip")
    loaded = SurgicalDQN.load(tmp_path / "darts.zip")
    x = th.randn(16, 4)
    with th.no_grad():
        th.testing.assert_close(loaded.q_net(x), model.q_net(x))
    assert cells_of(loaded.q_net, Cell)[0].genotype == cells_of(model.q_net, Cell)[0].genotype


def test_a_searching_darts_agent_reloads_its_architecture_weights(tmp_path):
    model = dqn("darts:arch_lr=0.05,discretize_at=1.0")
    model.learn(400, callback=StopAt(150))
    (cell,) = search_cells(model.q_net)
    assert float(cell.alpha.abs().max()) > 0
    model.save(tmp_path / "supernet.zip")
    loaded = SurgicalDQN.load(tmp_path / "supernet.zip")
    (again,) = search_cells(loaded.q_net)
    th.testing.assert_close(again.alpha, cell.alpha)
    x = th.randn(16, 4)
    with th.no_grad():
        th.testing.assert_close(loaded.q_net(x), model.q_net(x))


# --------------------------------------------------------------------------- enas
def check_enas():
    model = dqn("enas:discretize_at=1.0,arch_lr=0.1")
    model.learn(400, callback=StopAt(150))
    surgery = model._surgeries[0]
    (cell,) = search_cells(model.q_net)
    assert cell.sampled is not None and surgery.state(model).arch_steps > 50
    # the weight update trains the sampled child only
    child = [cell.candidates.index(n) for n in ("linear_relu", "linear_tanh", "linear_elu")]
    cell.set_child(child)
    model.policy.optimizer.zero_grad()
    model.compute_loss(model.sample_batch(32)).backward()
    for e, ops in enumerate(cell.edges):
        for o, op in enumerate(ops):
            grads = [p.grad for p in op.parameters()]
            if o == child[e]:
                assert all(g is not None and float(g.abs().sum()) > 0 for g in grads)
            else:
                assert all(g is None or float(g.abs().sum()) == 0 for g in grads), (e, o)
    # the controller: a reward above the baseline makes the child more likely, below less likely
    state = surgery.state(model)
    for baseline, sign in ((-10.0, 1), (10.0, -1)):
        sampled = th.tensor(cell.sampled)
        before = th.log_softmax(cell.alpha.detach(), dim=1).gather(1, sampled.view(-1, 1)).sum()
        state.baseline = baseline
        surgery.architecture_step(model)
        after = th.log_softmax(cell.alpha.detach(), dim=1).gather(1, sampled.view(-1, 1)).sum()
        assert sign * float(after - before) > 0, (baseline, float(before), float(after))


def test_enas_trains_the_sampled_child_and_rewards_the_controller():
    check_enas()


@pytest.mark.parametrize(
    "breakage",
    [
        replaced(
            enas,
            "reinforce_loss",
            lambda logits, child, advantage, w: -enas_loss(logits, child, advantage, w),
        ),
        replaced(SearchCell, "sampled", property(lambda self: None)),  # the soft supernet trains
    ],
    ids=["reward-sign-flipped", "child-ignored"],
)
def test_the_enas_proof_fails_when_broken(breakage):
    assert_proof_fails_when(breakage, check_enas)


enas_loss = enas.reinforce_loss


def test_enas_reloads_its_child_and_controller(tmp_path):
    model = dqn("enas:discretize_at=1.0")
    model.learn(400, callback=StopAt(120))
    model.save(tmp_path / "enas.zip")
    loaded = SurgicalDQN.load(tmp_path / "enas.zip")
    (cell,), (again,) = search_cells(model.q_net), search_cells(loaded.q_net)
    assert again.sampled == cell.sampled
    th.testing.assert_close(again.alpha, cell.alpha)
    x = th.randn(16, 4)
    with th.no_grad():
        th.testing.assert_close(loaded.q_net(x), model.q_net(x))


# --------------------------------------------------------------------------- refusals
@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: SurgicalPPO("MlpPolicy", "CartPole-v1", surgeries=["darts"]), "darts"),
        (lambda: dqn("cell_based_nas", policy_kwargs=dict(net_arch=[16, 8])), "widths"),
        (lambda: dqn("cell_based_nas:operations=[linear_relu,conv]"), "unknown"),
        (lambda: dqn("cell_based_nas:nodes=3"), "6 entries"),
        (lambda: dqn("enas:candidates=[linear_relu,sine]"), "candidates"),
    ],
    ids=["darts-on-ppo", "unequal-widths", "unknown-operation", "operations-per-edge", "unknown-candidate"],
)
def test_refusals(make, match):
    with pytest.raises(SurgeryError, match=match):
        make()


def test_a_supernet_cell_mixes_by_softmax_alpha():
    cell = SearchCell(4, nodes=1, candidates=["linear_relu", "identity"])
    with th.no_grad():
        cell.alpha.copy_(th.tensor([[0.0, 1.0]]))
    x = th.randn(8, 4)
    w = th.softmax(th.tensor([0.0, 1.0]), dim=0)
    th.testing.assert_close(cell(x), w[0] * cell.edges[0][0](x) + w[1] * x)
    copy.deepcopy(cell)  # copyable (targets are copies)

from __future__ import annotations

import math

import numpy as np
import torch as th
from torch.nn import functional as F

from rlsurgery import SurgicalDQN
from rlsurgery.exploration import noisy_nets
from rlsurgery.exploration.noisy_nets import NoisyLinear, noise_disabled, reset_noise
from tests.breakage import assert_proof_fails_when, replaced, wrapped


def check_noise_factors_are_f_of_gaussian_draws():
    """ε_in, ε_out = f(ε), f(x) = sgn(x)√|x|, ε ~ N(0, 1): f(ε)² = |ε| has mean √(2/π) and f(ε)⁴ = ε²
    mean 1 (plain Gaussian factors: 1 and 3), at the first draw and at every new one; the layer's
    weight noise is their outer product."""
    th.manual_seed(0)
    layer = NoisyLinear(50_000, 2)
    for _ in range(2):
        eps = layer.eps_in
        assert abs(float(eps.pow(2).mean()) - math.sqrt(2 / math.pi)) < 0.02, float(eps.pow(2).mean())
        assert abs(float(eps.pow(4).mean()) - 1.0) < 0.05, float(eps.pow(4).mean())
        assert abs(float(eps.mean())) < 0.02
        layer.reset_noise()
    small = NoisyLinear(6, 3)
    x = th.randn(4, 6)
    with th.no_grad():
        weight = small.weight_mu + small.weight_sigma * th.outer(small.eps_out, small.eps_in)
        th.testing.assert_close(small(x), x @ weight.T + small.bias_mu + small.bias_sigma * small.eps_out)


def test_noise_draws_differ_frozen_is_deterministic_sigma_gets_grad():
    check_noise_factors_are_f_of_gaussian_draws()
    th.manual_seed(0)
    layer = NoisyLinear(6, 3, sigma0=0.5)
    x = th.randn(4, 6)
    first = layer(x)
    th.testing.assert_close(layer(x), first)  # frozen noise: same output
    layer.reset_noise()
    assert not th.allclose(layer(x), first)  # a new draw changes the output
    with noise_disabled(layer):
        th.testing.assert_close(layer(x), F.linear(x, layer.weight_mu, layer.bias_mu))
    assert layer.noise_enabled
    layer(x).pow(2).sum().backward()
    assert layer.weight_sigma.grad.abs().sum() > 0 and layer.bias_sigma.grad.abs().sum() > 0
    assert layer.weight_mu.grad.abs().sum() > 0


def test_noise_proof_fails_on_plain_gaussian_or_unfactorised_noise():
    def plain(size, device):
        return th.randn(size, device=device)

    assert_proof_fails_when(
        replaced(noisy_nets, "scaled_noise", plain), check_noise_factors_are_f_of_gaussian_draws
    )

    def independent_weight_noise(forward):
        def noisy(self, x):
            sigma = self.weight_sigma * th.randn_like(self.weight_sigma)
            return F.linear(x, self.weight_mu + sigma, self.bias_mu + self.bias_sigma * self.eps_out)

        return noisy

    assert_proof_fails_when(
        wrapped(NoisyLinear, "forward", independent_weight_noise), check_noise_factors_are_f_of_gaussian_draws
    )


def test_factorised_noise_and_initialisation():
    th.manual_seed(1)
    layer = NoisyLinear(16, 4, sigma0=0.5)
    eps_w = th.outer(layer.eps_out, layer.eps_in)
    assert th.linalg.matrix_rank(eps_w) == 1  # factorised: ε_w = f(ε_out) f(ε_in)ᵀ
    bound = 1 / math.sqrt(16)
    assert layer.weight_mu.abs().max() <= bound
    th.testing.assert_close(layer.weight_sigma, th.full((4, 16), 0.5 * bound))
    # f(x) = sgn(x) √|x|: squares of the factors are |N(0,1)| draws
    with th.no_grad():
        manual = layer.weight_mu + layer.weight_sigma * eps_w
        x = th.randn(2, 16)
        th.testing.assert_close(layer(x), x @ manual.T + layer.bias_mu + layer.bias_sigma * layer.eps_out)


def noisy_agent(tiny_kwargs, **extra):
    tiny_kwargs.update(extra)
    return SurgicalDQN("MlpPolicy", "CartPole-v1", seed=0, surgeries=["noisy_nets"], **tiny_kwargs)


def test_agent_acts_greedily_on_fresh_noise(tiny_kwargs):
    model = noisy_agent(tiny_kwargs)
    assert model.exploration_initial_eps == model.exploration_final_eps == 0.0
    layers = [m for m in model.q_net.modules() if isinstance(m, NoisyLinear)]
    assert len(layers) == 3 and not any(isinstance(m, th.nn.Linear) for m in model.q_net.q_net.modules())
    obs = np.zeros((1, 4), dtype=np.float32)
    before = layers[0].eps_in.clone()
    model.predict(obs, deterministic=False)
    assert not th.equal(layers[0].eps_in, before)  # each exploratory step draws new noise
    # deterministic predictions use the mean weights: repeatable whatever the noise
    obs = np.random.default_rng(0).normal(size=(32, 4)).astype(np.float32)
    first = model.predict(obs, deterministic=True)[0]
    reset_noise(model.q_net)
    np.testing.assert_array_equal(model.predict(obs, deterministic=True)[0], first)


def test_training_resamples_noise_independently_in_both_networks(tiny_kwargs):
    model = noisy_agent(tiny_kwargs)
    model.learn(150)
    online = [m.eps_in for m in model.q_net.modules() if isinstance(m, NoisyLinear)]
    target = [m.eps_in for m in model.q_net_target.modules() if isinstance(m, NoisyLinear)]
    assert not all(th.equal(a, b) for a, b in zip(online, target))
    assert model.exploration_rate == 0.0
    sigma_before = [
        m.weight_sigma.detach().clone() for m in model.q_net.modules() if isinstance(m, NoisyLinear)
    ]
    model.train(gradient_steps=5, batch_size=16)
    sigma_after = [m.weight_sigma for m in model.q_net.modules() if isinstance(m, NoisyLinear)]
    assert any(not th.equal(a, b) for a, b in zip(sigma_before, sigma_after))  # σ is learned


def test_scope_all_reaches_the_features_extractor():
    from tests.helpers import TinyImageEnv

    model = SurgicalDQN(
        "CnnPolicy",
        TinyImageEnv(),
        buffer_size=100,
        policy_kwargs=dict(features_extractor_kwargs=dict(features_dim=16)),
        surgeries=["noisy_nets:scope=all"],
    )
    assert isinstance(model.q_net.features_extractor.linear[0], NoisyLinear)


def test_ppo_acts_and_learns_under_one_noise_draw_per_rollout():
    from rlsurgery import SurgicalPPO

    model = SurgicalPPO(
        "MlpPolicy",
        "CartPole-v1",
        seed=0,
        n_steps=64,
        batch_size=64,
        n_epochs=2,
        surgeries=["noisy_nets:sigma0=2.0"],
    )
    ratios = []
    original = model.compute_loss

    def recording(batch):
        loss = original(batch)
        ratios.append(batch.ratio.detach().clone())
        return loss

    model.compute_loss = recording
    model.learn(64)
    # the first update evaluates the rollout under the noise it was collected with: ratio = 1
    th.testing.assert_close(ratios[0], th.ones_like(ratios[0]))
    assert not th.allclose(ratios[1], th.ones_like(ratios[1]))  # after one step the policy moved
    eps = model.policy.action_net.eps_out.clone()
    model.learn(64, reset_num_timesteps=False)
    assert not th.equal(model.policy.action_net.eps_out, eps)  # a new rollout, a new draw
    # deterministic predictions use the mean weights: a new draw does not change them
    obs = np.random.default_rng(1).normal(size=(32, 4)).astype(np.float32)
    first = model.predict(obs, deterministic=True)[0]
    reset_noise(model.policy)
    np.testing.assert_array_equal(first, model.predict(obs, deterministic=True)[0])

"""What a surgery needs beyond its key to run on a standard agent: for catalog-wide sweeps.

The round-trip and SB3-compatibility tests and the per-key cost benchmark
(``scripts/bench/surgery_costs.py``) apply every implemented key to a stock agent. Most keys run
with their defaults; the ones here need a parameter without a default (an expert, a teacher, a
source checkpoint), a non-trivial default for a short run (curriculum stages), or another surgery
before them. Placeholders in the parameters: ``{expert}``, a CartPole-v1 expert zip
(:func:`save_cartpole_expert`); ``{checkpoint}``, a saved copy of the same agent without surgeries
(whoever builds the agent makes it).

    >>> example_specs("stochastic_depth")
    ['skip_connection_addition', 'stochastic_depth']
    >>> example_specs("dagger", expert="e.zip", extra="epochs=1")
    ['dagger:expert=e.zip,epochs=1']
"""

from __future__ import annotations

from pathlib import Path

#: distillation keys whose teacher can be any CartPole model (the expert)
EXPERT_TEACHER_KEYS = (
    "policy_distillation",
    "teacher_student_distillation",
    "soft_target_training",
    "feature_matching",
    "online_distillation",
)
#: distillation keys whose teacher must have the student's network (self-distillation, conv attention maps)
CHECKPOINT_TEACHER_KEYS = ("self_distillation", "attention_transfer")

#: transfer keys (section 8): their source must be the same network as the agent
TRANSFER_KEYS = (
    "feature_extraction",
    "full_fine_tuning",
    "gradual_unfreezing",
    "discriminative_fine_tuning",
    "head_replacement",
)

#: domain-adaptation keys (section 9): their target env (the sweeps' agents train on CartPole-v1)
ADAPTATION_KEYS = (
    "feature_alignment",
    "domain_adversarial_training",
    "pseudo_labeling",
    "self_training",
    "co_training",
    "backtranslation",
)

#: key -> the parameters it cannot run without (spec text, with placeholders)
REQUIRED_PARAMS: dict[str, str] = {
    "behavior_cloning": "expert={expert}",
    "dagger": "expert={expert}",
    "pre_training_initialization": "source={checkpoint}",
    **{key: "source={checkpoint}" for key in TRANSFER_KEYS},
    **{key: "target_env=CartPole-v1,collect_steps=64" for key in ADAPTATION_KEYS},
    "pseudo_labeling": "target_env=CartPole-v1,collect_steps=64,source={checkpoint}",
    "curriculum_learning": "stages=[{length: 0.4}, {length: 0.5}]",
    **{key: "teacher={expert}" for key in EXPERT_TEACHER_KEYS},
    **{key: "teacher={checkpoint}" for key in CHECKPOINT_TEACHER_KEYS},
}

#: key -> parameters without which the key does nothing to a freshly initialised network (spec text):
#: an energy-chosen SVD rank keeps a random matrix whole; rank 1 factorises even the tests' 16-unit layers
ACTING_PARAMS: dict[str, str] = {
    "svd_decomposition": "rank=1",
    "binary_networks": "keep_ends=False",  # one-hidden-layer test nets: every layer is a first or last
    "ternary_networks": "keep_ends=False",
    "tensor_train": "rank=1",  # the tests' 4 → 16 → 2 layers shrink only at TT-rank 1
}

#: key -> the surgeries that must come before it (stochastic depth drops residual blocks)
COMPANIONS: dict[str, list[str]] = {"stochastic_depth": ["skip_connection_addition"]}


def example_specs(
    key: str, expert: str | Path | None = None, checkpoint: str | Path | None = None, extra: str = ""
) -> list[str]:
    """The specs that apply ``key`` to a standard agent: its companions, then ``key`` with its
    required parameters, those it needs to act on a fresh network and ``extra`` (e.g. a short
    budget), placeholders filled where a path is given."""
    params = ",".join(p for p in (REQUIRED_PARAMS.get(key, ""), ACTING_PARAMS.get(key, ""), extra) if p)
    spec = f"{key}:{params}" if params else key
    if expert is not None:
        spec = spec.replace("{expert}", str(expert))
    if checkpoint is not None:
        spec = spec.replace("{checkpoint}", str(checkpoint))
    return [*COMPANIONS.get(key, []), spec]


def save_cartpole_expert(folder: str | Path) -> Path:
    """A CartPole-v1 PPO expert, saved as ``folder/expert.zip``: no hidden layer, logits
    [0, 100·θ + 50·θ̇] (it pushes towards the side the pole falls to, and balances it)."""
    import torch as th

    from rlsurgery.agents import SurgicalPPO

    model = SurgicalPPO("MlpPolicy", "CartPole-v1", seed=0, policy_kwargs=dict(net_arch=[]))
    with th.no_grad():
        model.policy.action_net.weight.copy_(th.tensor([[0.0, 0.0, 0.0, 0.0], [0.0, 0.0, 100.0, 50.0]]))
    path = Path(folder) / "expert.zip"
    model.save(path)
    return path

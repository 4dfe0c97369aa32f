"""Training-procedure surgeries on the optimizers (catalog sections 5 and 6).

They act through :mod:`rlsurgery.nets.step_hooks`: one step pre-hook per optimizer of the agent
(``torch.optim.Optimizer.register_step_pre_hook``), which runs right before every update of
every algorithm (DQN, PPO, A2C, SAC, TD3, TRPO's value function) without touching their
training loops.
"""

"""What the surgeries of several catalog areas share at run time, below them all and below the agents:

* :mod:`~rlsurgery.runtime.wrappers`: the base of the env wrappers surgeries put on the training env;
* :mod:`~rlsurgery.runtime.callbacks`: how surgeries act during training (``EveryStep``);
* :mod:`~rlsurgery.runtime.models`: evaluation envs with the agent's observation layout;
* :mod:`~rlsurgery.runtime.schedules`: value schedules (linear, exponential, piecewise, constant).

Nothing here imports a surgery or an agent.
"""

"""What the surgeries of several catalog areas share at run time, below them all: the environment
wrappers surgeries put around the training env (:mod:`~rlsurgery.runtime.wrappers`). Agents and
surgeries import from here; nothing here imports a surgery or an agent."""

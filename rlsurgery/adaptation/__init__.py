"""Domain-adaptation surgeries (catalog section 9): a source task with rewards, a target task without.

The agent trains on the source env as usual; the target env gives only observations, from rollouts of
the agent's current policy (:mod:`rlsurgery.adaptation.target`), which the surgeries use through the
``aux_loss`` stage to make the agent's features or outputs carry over to the target.
"""

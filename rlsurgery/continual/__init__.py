"""Continual-learning surgeries (catalog section 10): keep what earlier tasks taught while a new one trains.

They act at the task switches of a sequence (:mod:`rlsurgery.runtime.tasks`: ``on_task_switch``) and
through the ``aux_loss`` and ``augment`` stages between them.
"""

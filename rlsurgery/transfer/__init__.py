"""Transfer surgeries (catalog section 8): start a target-task agent from a trained source model.

The shared plumbing (the source, the one weight copy, what trains) is :mod:`rlsurgery.transfer.source`;
the layer groups and the copy are the toolkit's (:mod:`rlsurgery.nets.transfer`). ``adapter_layers``,
the parameter-efficient member of the section, lives with the low-rank surgeries
(:mod:`rlsurgery.lowrank.adapters`).
"""

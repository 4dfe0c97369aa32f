"""Pruning and sparsity surgeries (catalog sections 1 and 27), on the mask toolkit of
:mod:`rlsurgery.nets.masks`."""

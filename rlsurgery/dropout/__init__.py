"""Dropout and stochastic regularization (catalog section 11): dropout, DropConnect, stochastic
depth, DropBlock, scheduled and variational dropout."""

"""Activation function surgery (catalog section 4): replace, smooth or learn the activations, and
gates and attention inserted function-preservingly."""

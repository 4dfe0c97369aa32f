"""Training diagnostics (catalog section 29): monitors of gradients, activations and weights, and
probes of the loss (learning-rate finder, loss landscape)."""

"""Normalization surgery (catalog section 12): normalization layers inserted into the networks
(batch, layer, group, instance) and reparameterised weights (weight and spectral normalization)."""

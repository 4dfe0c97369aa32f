"""Ensemble surgeries (catalog section 16): K members in one network (:mod:`rlsurgery.nets.ensemble`),
trained and read in different ways."""

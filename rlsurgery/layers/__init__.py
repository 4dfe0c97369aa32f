"""Layer and block modification (catalog section 3): add, remove, widen and rewire layers, most of
them function-preserving (Net2Net morphisms, identity-initialised blocks)."""

"""Weight initialization surgery (catalog section 13): Xavier, He, orthogonal, LSUV, from another
model, and lottery-ticket rewinding's starting point."""

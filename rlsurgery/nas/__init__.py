"""Architecture search surgeries (catalog section 14): searching over the networks of an agent, by
morphisms of a running agent, by samplers of ``rlsurgery tune``, or inside one supernet."""

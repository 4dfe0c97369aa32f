"""The search methods of ``rlsurgery tune`` as catalog keys (section 15): each builds one of Optuna's
samplers or pruners from its parameters (:class:`~rlsurgery.tune.methods.base.SearchMethod`)."""

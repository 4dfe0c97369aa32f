"""Hyperparameter and surgery search on Optuna (``rlsurgery tune``): the search space
(:mod:`~rlsurgery.tune.space`), a trial's multi-seed objective (:mod:`~rlsurgery.tune.objective`)
and the tuner with its storage, resume and final check on fresh seeds (:mod:`~rlsurgery.tune.tuner`)."""

from rlsurgery.tune.space import SearchSpace, TuneError, load_space
from rlsurgery.tune.tuner import TuneSettings, tune

__all__ = ["SearchSpace", "TuneError", "TuneSettings", "load_space", "tune"]

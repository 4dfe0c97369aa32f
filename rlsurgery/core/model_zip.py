"""A model zip's ``data`` record: reading it, checking it, and loading it without unpickling.

An SB3 zip holds ``data`` (JSON, where every entry JSON cannot hold is a base64 cloudpickle marked
``":serialized:"``), the parameters (``policy.pth``, ...; SB3 reads them with
``torch.load(weights_only=True)``) and a few text files. Unpickling an entry of ``data`` runs
whatever code the file names, so rlsurgery never does it unless the user opts in:

* on save, every serialized entry is also written as plain data (:mod:`rlsurgery.core.plain_data`)
  under :data:`PLAIN_DATA_KEY`;
* on load, :func:`safe_custom_objects` rebuilds each serialized entry from that copy and hands
  them to SB3 as ``custom_objects``, which SB3 uses *instead of* unpickling;
* a zip with a serialized entry that has no plain copy (a plain SB3 zip, an rlsurgery zip from
  before plain saving, a crafted entry) is refused with :class:`UntrustedModelError`, which names
  the opt-in: ``trust=True`` in Python, ``--trust`` on the command line (:func:`trusted_zips`).

A zip whose networks plain SB3 cannot build also holds :data:`PLAIN_LOAD_GUARD_KEY`, a
:class:`PlainLoadGuard` that only plain SB3 unpickles (rlsurgery always replaces it): see
:mod:`rlsurgery.agents.sb3_zip`.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import pickle
import warnings
import zipfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from rlsurgery.core.errors import ModelFileError, UntrustedModelError
from rlsurgery.core.plain_data import PlainDataError, decode, encode

#: key of ``data`` holding the plain copies: {"format": 1, "entries": {...}, "unencodable": {...}}
PLAIN_DATA_KEY = "rlsurgery_plain_data"
PLAIN_DATA_FORMAT = 1
#: how a loading command opts in to unpickling (named in every refusal)
OPT_IN = "pass trust=True or load inside `with rlsurgery.trusted_zips():` (on the command line: --trust)"

#: ``data`` entry that stops plain SB3's ``load`` of a zip that needs rlsurgery (see :class:`PlainLoadGuard`)
PLAIN_LOAD_GUARD_KEY = "rlsurgery_plain_load_guard"


class NeedsRlsurgeryError(ValueError):
    """Plain SB3 loading a zip whose networks only rlsurgery can build (a ``ValueError``: SB3 turns
    the ``RuntimeError``, ``TypeError`` and ``AttributeError`` of an entry it unpickles into warnings)."""


def refuse_plain_load(keys: list[str], reason: str = "") -> None:
    """Raised into plain SB3's ``load`` when it unpickles a :class:`PlainLoadGuard`."""
    why = f" ({reason})" if reason else ""
    raise NeedsRlsurgeryError(
        f"this model's networks were changed by {', '.join(keys)}{why}, which plain Stable-Baselines3 "
        "cannot build; load it with rlsurgery: rls.load(path)"
    )


class PlainLoadGuard:
    """Saved in the ``data`` of a zip that needs rlsurgery: unpickling it (what plain SB3's ``load``
    does with every entry it cannot read as JSON) raises :class:`NeedsRlsurgeryError` naming the
    surgeries, before any network is built. rlsurgery's loaders never unpickle it."""

    def __init__(self, keys: list[str], reason: str = "") -> None:
        self.keys, self.reason = list(keys), reason

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        return refuse_plain_load, (self.keys, self.reason)


_TRUSTED: contextvars.ContextVar[bool] = contextvars.ContextVar("rlsurgery_trusted_zips", default=False)


@contextlib.contextmanager
def trusted_zips(trust: bool = True) -> Iterator[None]:
    """Within this block, model zips load as SB3 loads them (unpickling) when ``trust`` is True:
    what ``--trust`` does for a whole command, including zips that surgeries read (a teacher)."""
    token = _TRUSTED.set(_TRUSTED.get() or trust)
    try:
        yield
    finally:
        _TRUSTED.reset(token)


def zips_trusted(trust: bool = False) -> bool:
    """Whether a load should unpickle: asked for (``trust``) or inside :func:`trusted_zips`."""
    return trust or _TRUSTED.get()


def is_file_object(path: Any) -> bool:
    """Whether ``path`` is an open binary file (SB3's ``save`` and ``load`` take those too)."""
    return hasattr(path, "read") and hasattr(path, "seek")


def model_zip_path(path: Any) -> Any:
    """The file SB3 would read for ``path`` (it adds ``.zip`` when that file exists); a file
    object as it is."""
    if is_file_object(path):
        return path
    path = Path(path)
    if not path.exists() and path.with_name(path.name + ".zip").is_file():
        return path.with_name(path.name + ".zip")
    return path


def read_model_data(path: str | Path) -> dict[str, Any]:
    """The JSON ``data`` record of an SB3 model zip (no torch, no unpickling)."""
    path = model_zip_path(path)
    if is_file_object(path):
        path.seek(0)
    elif path.is_dir():
        raise ModelFileError(f"{path} is a folder, not a model zip (a run folder holds model.zip)")
    try:
        with zipfile.ZipFile(path) as archive:
            data = json.loads(archive.read("data").decode("utf-8"))
        if is_file_object(path):
            path.seek(0)  # SB3 reads the same file object next
    except FileNotFoundError:
        raise FileNotFoundError(f"no model file at {path}") from None
    except zipfile.BadZipFile:
        raise ModelFileError(f"{path} is not a model zip (not a zip file)") from None
    except KeyError:
        raise ModelFileError(f"{path} is not an SB3 model zip (it has no 'data' record)") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelFileError(f"{path}: the model's 'data' record is damaged ({exc})") from None
    if not isinstance(data, dict):
        raise ModelFileError(f"{path}: the model's 'data' record is not a JSON object")
    return data


def serialized_keys(data: Mapping[str, Any]) -> list[str]:
    """Entries of ``data`` that SB3 would unpickle."""
    return [k for k, v in data.items() if isinstance(v, dict) and ":serialized:" in v]


def _is_json(value: Any) -> bool:
    try:
        json.dumps(value)
    except (TypeError, ValueError, OverflowError):
        return False
    return True


def plain_data_record(entries: Mapping[str, Any]) -> dict[str, Any]:
    """What to store under :data:`PLAIN_DATA_KEY` for the ``data`` entries a save writes: a plain copy
    of each entry that SB3 will pickle, and why an entry could not be copied. Warns for the latter:
    such a model loads only with the opt-in (or ``custom_objects`` for those entries)."""
    plain: dict[str, Any] = {}
    unencodable: dict[str, str] = {}
    for key, value in entries.items():
        if _is_json(value):
            continue
        try:
            plain[key] = encode(value)
        except PlainDataError as exc:
            unencodable[key] = str(exc)
    if unencodable:
        warnings.warn(
            "saved entries that only unpickling can rebuild: "
            + "; ".join(f"{k} ({why})" for k, why in unencodable.items())
            + f". Loading this model will need custom_objects for them, or {OPT_IN}",
            stacklevel=3,
        )
    return {"format": PLAIN_DATA_FORMAT, "entries": plain, "unencodable": unencodable}


def safe_custom_objects(
    path: str | Path, data: Mapping[str, Any], given: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """``custom_objects`` for SB3's ``load`` that stand in for every serialized entry of ``data``:
    ``given`` ones first, the rest rebuilt from the plain copy. Raises :class:`UntrustedModelError`
    naming the entries that only unpickling could rebuild, and why."""
    given = dict(given or {})
    needed = [k for k in serialized_keys(data) if k not in given]
    record = data.get(PLAIN_DATA_KEY)
    if not needed:
        return given
    if not isinstance(record, dict) or not isinstance(record.get("entries"), dict):
        written_by = (
            "an rlsurgery version from before plain-data saving"
            if "rlsurgery_algorithm" in data
            else "plain Stable-Baselines3 (or another library)"
        )
        raise UntrustedModelError(
            f"{path}: refusing to load a model written by {written_by}: it stores "
            f"{', '.join(needed)} as pickled Python objects, and unpickling can run code from the file. "
            f"If you trust where the file came from, {OPT_IN}"
        )
    objects = dict(given)
    problems: list[str] = []
    for key in needed:
        if key not in record["entries"]:
            why = (record.get("unencodable") or {}).get(key, "no plain copy in the file")
            problems.append(f"{key} ({why})")
            continue
        try:
            objects[key] = decode(record["entries"][key])
        except PlainDataError as exc:
            problems.append(f"{key} ({exc})")
    if problems:
        raise UntrustedModelError(
            f"{path}: refusing to load: {'; '.join(problems)} can only be rebuilt by unpickling, "
            f"which can run code from the file. Give them as custom_objects, or if you trust where "
            f"the file came from, {OPT_IN}"
        )
    return objects


def check_surgery_log(path: str | Path, data: Mapping[str, Any]) -> None:
    """The model's ``surgery_log`` is a list of records with a key, parameters, step and how applied."""
    log = data.get("surgery_log")
    if log is None:
        return
    if isinstance(log, dict) and ":serialized:" in log:
        return  # an old zip's pickled log: only readable with the opt-in, checked after loading
    if not isinstance(log, list):
        raise ModelFileError(f"{path}: surgery_log must be a list of records, not {type(log).__name__}")
    for i, record in enumerate(log, 1):
        where = f"{path}: surgery_log record {i}"
        if not isinstance(record, dict):
            raise ModelFileError(f"{where} must be a JSON object, not {type(record).__name__}")
        missing = [f for f in ("key", "params", "step", "applied") if f not in record]
        if missing:
            raise ModelFileError(f"{where} has no {', '.join(map(repr, missing))}")
        if not isinstance(record["key"], str) or not isinstance(record["params"], dict):
            raise ModelFileError(f"{where}: 'key' must be a string and 'params' an object")
        if not isinstance(record["step"], int) or isinstance(record["step"], bool) or record["step"] < 0:
            raise ModelFileError(f"{where}: 'step' must be an integer ≥ 0, not {record['step']!r:.40}")
        if record["applied"] not in ("build", "operate", "scheduled", "at_step"):
            raise ModelFileError(
                f"{where}: 'applied' must be build, operate, scheduled or at_step, "
                f"not {record['applied']!r:.40}"
            )


def load_without_unpickling(
    load: Any, path: str | Path, *, trust: bool, custom_objects: Mapping[str, Any] | None, **kwargs: Any
) -> Any:
    """``load(path, custom_objects=..., **kwargs)`` (an SB3 class's ``load``) on a checked zip: its
    surgery log well-formed, every serialized entry replaced (:func:`safe_custom_objects`) unless
    ``trust`` (or :func:`trusted_zips`); a file SB3 cannot read becomes :class:`ModelFileError`."""
    path = model_zip_path(path)
    data = read_model_data(path)
    check_surgery_log(path, data)
    given = {PLAIN_LOAD_GUARD_KEY: None, **(custom_objects or {})}  # never unpickled, by anyone here
    objects = dict(given) if zips_trusted(trust) else safe_custom_objects(path, data, given)
    try:
        return load(path, custom_objects=objects or None, **kwargs)
    except (pickle.UnpicklingError, EOFError, zipfile.BadZipFile, RuntimeError) as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelFileError(
            f"{path}: the model's parameters cannot be read or do not fit it ({first_line})"
        ) from exc

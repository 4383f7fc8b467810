"""Flight-processor profiles: one TOML file per processor, validated on load.

Units are part of the field names (``ram_bytes``, ``clock_hz``, ``sustained_macs_per_s``,
``power_w``); a unit-less or differently-united key such as ``ram_mb`` or ``clock_mhz`` is refused
with a message naming the field that was meant. Unknown keys are refused. Every profile carries
``source`` (references) and ``confidence`` (``datasheet`` | ``secondary`` | ``approx``); the figure
for sustained throughput has its own ``sustained_macs_basis`` saying how it was derived.

The registry is the folder: adding a processor means adding one file (see :func:`load_profiles`).
The profiles etdeploy ships are package data in ``etdeploy/targets/profiles/`` (inside the wheel, so a
plain ``pip install`` has them; :func:`default_targets_dir`); ``--targets-dir`` points at another folder.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from etdeploy.errors import TargetProfileError
from etdeploy.records import Record, RecordError

CONFIDENCE_LEVELS = ("datasheet", "secondary", "approx")
ANY_OP = "*"
MAX_PROFILE_BYTES = 256 * 1024
_ID = re.compile(r"^[a-z0-9][a-z0-9-]{0,63}$")


@dataclass(frozen=True)
class TargetProfile(Record):
    """One processor. ``ram_bytes`` is the computer's physical RAM; ``model_ram_bytes`` the part the
    model may use beside the OS and flight software (the fit verdict uses this budget), with
    ``model_ram_basis`` saying where the budget comes from (usually an assumption).

    ``weights_in_ram``: the runtime copies weights into RAM (Linux/RTOS boards; RAM must hold
    weights + activations); ``False`` for microcontrollers that execute weights in place from flash.
    ``flash_bytes = 0`` means no on-device storage for the model (a host loads it).
    ``supported_ops``: ONNX op types the target's deployment path runs; ``["*"]`` = every op of
    ONNX Runtime's CPU provider.

    As a record, ``to_dict()`` is :func:`profile_to_dict` (every field but ``path``, the file it was
    read from, which is also left out of comparisons) and ``from_dict()`` validates like a profile file.
    """

    id: str
    name: str
    processor: str
    missions: tuple[str, ...]
    isa: str
    cores: int
    clock_hz: float
    ram_bytes: int
    model_ram_bytes: int
    model_ram_basis: str
    flash_bytes: int
    weights_in_ram: bool
    peak_macs_per_s: float
    sustained_macs_per_s: float
    sustained_macs_basis: str
    fp32: bool
    fp16: bool
    int8: bool
    ort_supported: bool
    os: str
    codegen_backend: str
    supported_ops: tuple[str, ...]
    power_w: float
    source: str
    confidence: str
    notes: str = ""
    path: str = field(default="", compare=False)

    def supports_op(self, op_type: str) -> bool:
        return ANY_OP in self.supported_ops or op_type in self.supported_ops

    def to_dict(self) -> dict[str, Any]:
        return profile_to_dict(self)

    @classmethod
    def from_dict(cls, data: Any, *, where: str | None = None) -> TargetProfile:
        try:
            return profile_from_dict(data)
        except TargetProfileError as exc:
            raise RecordError(f"{where or 'target profile'}: {exc.message}") from exc


# field -> (accepted python types, description used in messages)
_SCHEMA: dict[str, tuple[tuple[type, ...], str]] = {
    "id": ((str,), "identifier equal to the file name without .toml"),
    "name": ((str,), "display name"),
    "processor": ((str,), "processor and where it flew"),
    "missions": ((list,), "list of mission names (strings)"),
    "isa": ((str,), "instruction set"),
    "cores": ((int,), "number of cores (integer)"),
    "clock_hz": ((int, float), "clock in Hz"),
    "ram_bytes": ((int,), "physical RAM in bytes (integer)"),
    "model_ram_bytes": ((int,), "RAM budget for the model in bytes (integer)"),
    "model_ram_basis": ((str,), "where the model RAM budget comes from"),
    "flash_bytes": ((int,), "non-volatile memory available to the model in bytes (integer)"),
    "weights_in_ram": ((bool,), "true if weights are loaded into RAM"),
    "peak_macs_per_s": ((int, float), "peak multiply-accumulates per second (fp32; fp16 where fp32 = false)"),
    "sustained_macs_per_s": ((int, float), "sustained multiply-accumulates per second (fp32; fp16 where fp32 = false)"),
    "sustained_macs_basis": ((str,), "how the sustained figure was derived"),
    "fp32": ((bool,), "hardware fp32"),
    "fp16": ((bool,), "hardware fp16"),
    "int8": ((bool,), "efficient int8 arithmetic"),
    "ort_supported": ((bool,), "ONNX Runtime runs on the target"),
    "os": ((str,), "operating system"),
    "codegen_backend": ((str,), "deployment path when ONNX Runtime does not run there"),
    "supported_ops": ((list,), "ONNX op types supported, or [\"*\"]"),
    "power_w": ((int, float), "typical power in watts"),
    "source": ((str,), "references for the figures"),
    "confidence": ((str,), "datasheet | secondary | approx"),
    "notes": ((str,), "free text"),
}
_OPTIONAL = {"notes"}
_UNIT_SUFFIXES = ("_bytes", "_hz", "_macs_per_s", "_w", "_s")
_WRONG_UNITS = re.compile(r"_(kb|kib|mb|mib|gb|gib|tb|b|khz|mhz|ghz|mw|kw|gmacs|mmacs|macs|gops|tops|flops|"
                          r"gflops|tflops|dmips|mips|ms|us|per_ms)$")


def _suggest_field(key: str) -> str | None:
    """For a key with a wrong or missing unit (``ram_mb``, ``clock``), the schema field meant."""
    stem = _WRONG_UNITS.sub("", key)
    for name in _SCHEMA:
        for suffix in _UNIT_SUFFIXES:
            if name.endswith(suffix) and name[: -len(suffix)] == stem:
                return name
    return None


def _fail(message: str, path: Path | None, field: str | None = None) -> TargetProfileError:
    prefix = f"field {field!r}: " if field else ""
    return TargetProfileError(prefix + message, path)


def profile_from_dict(data: dict[str, Any], path: Path | None = None) -> TargetProfile:
    """Validate a parsed TOML table; every problem names the field. Raises TargetProfileError."""
    if not isinstance(data, dict):
        raise _fail("profile must be a TOML table", path)
    for key in data:
        if key not in _SCHEMA:
            meant = _suggest_field(key)
            if meant:
                raise _fail(f"wrong or missing unit; use {meant!r} ({_SCHEMA[meant][1]})", path, key)
            raise _fail(f"unknown field; allowed fields: {', '.join(_SCHEMA)}", path, key)
    missing = [k for k in _SCHEMA if k not in data and k not in _OPTIONAL]
    if missing:
        raise _fail(f"required field missing ({_SCHEMA[missing[0]][1]})"
                    + (f"; also missing: {', '.join(missing[1:])}" if len(missing) > 1 else ""), path, missing[0])
    values: dict[str, Any] = {}
    for key, (types, description) in _SCHEMA.items():
        if key not in data:
            continue
        value = data[key]
        if isinstance(value, bool) and bool not in types:
            raise _fail(f"expected {description}, got a boolean", path, key)
        if not isinstance(value, types):
            raise _fail(f"expected {description}, got {type(value).__name__} {value!r}", path, key)
        values[key] = value
    for key in ("missions", "supported_ops"):
        items = values[key]
        if not items or not all(isinstance(v, str) and v.strip() for v in items):
            raise _fail("must be a non-empty list of non-empty strings", path, key)
        values[key] = tuple(items)
    for key in ("cores",):
        if values[key] < 1:
            raise _fail(f"must be >= 1, got {values[key]}", path, key)
    for key in ("clock_hz", "ram_bytes", "model_ram_bytes", "peak_macs_per_s", "sustained_macs_per_s", "power_w"):
        if not values[key] > 0:
            raise _fail(f"must be > 0, got {values[key]}", path, key)
    if values["flash_bytes"] < 0:
        raise _fail(f"must be >= 0, got {values['flash_bytes']}", path, "flash_bytes")
    if values["clock_hz"] < 1e6:
        raise _fail(f"{values['clock_hz']} Hz is implausibly low; is the unit MHz? give Hz", path, "clock_hz")
    if values["ram_bytes"] < 1024:
        raise _fail(f"{values['ram_bytes']} bytes is implausibly small; is the unit MB? give bytes", path,
                    "ram_bytes")
    if values["model_ram_bytes"] > values["ram_bytes"]:
        raise _fail("model RAM budget exceeds the physical ram_bytes", path, "model_ram_bytes")
    if values["sustained_macs_per_s"] > values["peak_macs_per_s"]:
        raise _fail("sustained throughput exceeds peak_macs_per_s", path, "sustained_macs_per_s")
    if values["confidence"] not in CONFIDENCE_LEVELS:
        raise _fail(f"must be one of {', '.join(CONFIDENCE_LEVELS)}, got {values['confidence']!r}", path,
                    "confidence")
    if not _ID.match(values["id"]):
        raise _fail("must be lower-case letters, digits and '-'", path, "id")
    if path is not None and values["id"] != path.stem:
        raise _fail(f"id {values['id']!r} differs from the file name {path.stem!r}", path, "id")
    for key in ("source", "sustained_macs_basis", "model_ram_basis", "name"):
        if not values[key].strip():
            raise _fail("must not be empty", path, key)
    if ANY_OP in values["supported_ops"] and len(values["supported_ops"]) > 1:
        raise _fail('use either ["*"] or a list of op types, not both', path, "supported_ops")
    values["clock_hz"] = float(values["clock_hz"])
    values["peak_macs_per_s"] = float(values["peak_macs_per_s"])
    values["sustained_macs_per_s"] = float(values["sustained_macs_per_s"])
    values["power_w"] = float(values["power_w"])
    return TargetProfile(**values, path="" if path is None else str(path))


def load_profile(path: str | os.PathLike) -> TargetProfile:
    """Parse and validate one profile file."""
    path = Path(path)
    if not path.is_file():
        raise TargetProfileError("target profile file does not exist", path)
    if path.stat().st_size > MAX_PROFILE_BYTES:
        raise TargetProfileError(f"target profile is larger than {MAX_PROFILE_BYTES} bytes", path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise TargetProfileError(f"not valid TOML: {exc}", path) from exc
    return profile_from_dict(data, path)


def default_targets_dir() -> Path:
    """The profiles shipped with etdeploy: the ``profiles`` folder of the installed ``etdeploy.targets``
    package (package data; the same folder in a checkout, an editable or a regular install)."""
    from importlib.resources import files

    return Path(str(files("etdeploy.targets").joinpath("profiles")))


def load_profiles(targets_dir: str | os.PathLike | None = None) -> dict[str, TargetProfile]:
    """Every ``*.toml`` in ``targets_dir`` (default :func:`default_targets_dir`), by id, sorted."""
    folder = Path(targets_dir) if targets_dir is not None else default_targets_dir()
    if not folder.is_dir():
        raise TargetProfileError("targets folder not found; pass --targets-dir", folder)
    profiles = {}
    for path in sorted(folder.glob("*.toml")):
        profile = load_profile(path)
        profiles[profile.id] = profile
    if not profiles:
        raise TargetProfileError("targets folder holds no *.toml profile", folder)
    return profiles


def get_profile(target_id: str, targets_dir: str | os.PathLike | None = None) -> TargetProfile:
    """Load one profile by id (``<targets_dir>/<id>.toml``) or from an explicit ``.toml`` path."""
    if target_id.endswith(".toml"):
        return load_profile(target_id)
    folder = Path(targets_dir) if targets_dir is not None else default_targets_dir()
    if not _ID.match(target_id):
        raise TargetProfileError(f"bad target id {target_id!r}", folder)
    path = folder / f"{target_id}.toml"
    if not path.is_file():
        known = sorted(p.stem for p in folder.glob("*.toml")) if folder.is_dir() else []
        raise TargetProfileError(f"unknown target {target_id!r}; known: {', '.join(known) or 'none'}", folder)
    return load_profile(path)


def resolve_targets(target_ids: Sequence[str], targets_dir: str | os.PathLike | None = None
                    ) -> dict[str, TargetProfile]:
    """Profiles by id for ``target_ids``: ids in ``targets_dir`` (default :func:`default_targets_dir`),
    paths of ``.toml`` files, or ``all`` (every profile of the folder). Every unknown id is named in one
    :class:`TargetProfileError` that lists the known ones."""
    ids = list(dict.fromkeys(target_ids))
    if not ids:
        raise TargetProfileError("no target given; name one (see `etdeploy targets list`) or 'all'")
    folder = Path(targets_dir) if targets_dir is not None else default_targets_dir()
    named = [t for t in ids if t != "all" and not t.endswith(".toml")]
    unknown = [t for t in named if not _ID.match(t) or not (folder / f"{t}.toml").is_file()]
    if unknown:
        known = sorted(p.stem for p in folder.glob("*.toml")) if folder.is_dir() else []
        listed = ", ".join(repr(t) for t in unknown)
        raise TargetProfileError(f"unknown target{'s' if len(unknown) > 1 else ''} {listed}; "
                                 f"known: {', '.join(known) or 'none'}", folder)
    profiles: dict[str, TargetProfile] = {}
    for target_id in ids:
        if target_id == "all":
            profiles.update(load_profiles(folder))
        else:
            profile = get_profile(target_id, folder)
            profiles[profile.id] = profile
    return profiles


def profile_to_dict(profile: TargetProfile) -> dict[str, Any]:
    d = {f.name: getattr(profile, f.name) for f in fields(profile) if f.name != "path"}
    d["missions"] = list(profile.missions)
    d["supported_ops"] = list(profile.supported_ops)
    return d

"""Read tuning configs: DeepGen's format ("format": "deepgen-tuning/1", checked against
schema.json) and the legacy DeepGen files (upper-case keys, each a list of values).

Both become a TuningConfig: the problems (GemmSpecs) and the search space (TileConfig field ->
list of values). Every error is a TuningConfigError naming the file, the place in it as a JSON
path ($.space.BM[2]) and the reason. The format is described in tuning_configs/README.md.
"""
from __future__ import annotations

import dataclasses
import itertools
import json
import os
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from deepgen.spec import GemmSpec, SpecError

FORMAT = "deepgen-tuning/1"
SCHEMA_FILE = Path(__file__).with_name("schema.json")  # tuning_configs/schema.json links here
DEFAULT_TARGET = "sm_90a"
LEGACY_TARGETS = {32: DEFAULT_TARGET, 64: "gfx942"}  # legacy WARP_SIZE -> target


class TuningConfigError(ValueError):
    def __init__(self, path, where: str, reason: str):
        super().__init__(f"{path}: {where}: {reason}")
        self.path, self.where, self.reason = str(path), where, reason


@dataclass
class TuningConfig:
    path: str
    name: str
    target: str
    specs: list[GemmSpec]
    space: dict[str, list]  # config field -> values, in file order, without repeats
    base: str = "heuristic"  # "heuristic" or "fixed": where absent fields come from
    max_candidates: int | None = None
    seed: int = 0
    legacy: bool = False
    notes: list[str] = field(default_factory=list)  # things worth telling (duplicate keys...)


def load(path: str | os.PathLike, target: str | None = None) -> TuningConfig:
    """Read a tuning config of either format; `target` overrides the file's."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as e:
        raise TuningConfigError(path, "$", f"cannot read the file ({e.strerror or e})") from None
    pairs_seen: list[list[tuple[str, object]]] = []

    def keep_pairs(pairs):
        pairs_seen.append(pairs)
        return dict(pairs)  # a repeated key: the last value wins, as json.loads does

    try:
        data = json.loads(text, object_pairs_hook=keep_pairs)
    except ValueError as e:
        raise TuningConfigError(path, "$", f"not valid JSON ({e})") from None
    if not isinstance(data, dict):
        raise TuningConfigError(path, "$", f"must be a JSON object, got {type(data).__name__}")
    if "format" not in data and _looks_legacy(data):
        cfg = _from_legacy(path, data, pairs_seen[-1])
    else:
        cfg = _from_native(path, data, pairs_seen)
    if target:
        cfg.target = target
    _check_target(path, cfg.target)
    return cfg


def _check_target(path, target: str) -> None:
    from deepgen.compiler.target import get_target

    try:
        get_target(target)
    except ValueError as e:
        raise TuningConfigError(path, "$.target", str(e).split(": ", 1)[-1]) from None


# ---------------------------------------------------------------------------------------------
# DeepGen's format


@cache
def schema() -> dict:
    return json.loads(SCHEMA_FILE.read_text())


def _from_native(path: Path, data: dict, pairs_seen) -> TuningConfig:
    import jsonschema

    for pairs in pairs_seen:  # a repeated key in our own format is a mistake, not a habit
        keys = [k for k, _ in pairs]
        dup = next((k for k in keys if keys.count(k) > 1), None)
        if dup is not None:
            raise TuningConfigError(path, f"$.{dup}", "key given more than once")
    validator = jsonschema.Draft202012Validator(schema())
    error = jsonschema.exceptions.best_match(validator.iter_errors(data))
    if error is not None:
        raise TuningConfigError(path, error.json_path, _schema_reason(error))
    dtypes = data["dtype"] if isinstance(data["dtype"], list) else [data["dtype"]]
    space = {}
    for name, values in data["space"].items():
        space[name] = _unique(_values(path, f"$.space.{name}", values))
    specs = []
    for i, shape in enumerate(data["shapes"]):
        where = f"$.shapes[{i}]"
        dims = {k: _m_range(path, f"{where}.{k}", v) if k == "M" and _is_m_range(v)
                else _values(path, f"{where}.{k}", v) for k, v in shape.items()}
        if "size" in dims:
            dims.update(M=dims["size"], N=dims["size"], K=dims.pop("size"))
        batches = dims.get("batch", [1])
        square = "size" in shape
        for dtype, layout in itertools.product(dtypes, data.get("layouts", ["NN"])):
            for M, N, K, batch in (((s, s, s, b) for s in dims["M"] for b in batches) if square
                                   else itertools.product(dims["M"], dims["N"], dims["K"],
                                                          batches)):
                specs.append(_spec(path, where, M=M, N=N, K=K, batch=batch, dtype=dtype,
                                   out_dtype=data.get("out_dtype"), layout=layout,
                                   scale=data.get("scale", "none")))
    return TuningConfig(path=str(path), name=data.get("name") or path.stem,
                        target=data.get("target", DEFAULT_TARGET), specs=_unique(specs),
                        space=space, base=data.get("base", "heuristic"),
                        max_candidates=data.get("max_candidates"), seed=data.get("seed", 0))


def _schema_reason(error) -> str:
    if error.validator == "additionalProperties" and error.json_path.endswith(".space"):
        from deepgen.compiler import strategies
        from deepgen.compiler.config import TileConfig

        own = "; ".join(f"with strategy [{n!r}]: "
                        f"{', '.join(strategies.get(n).config_class.field_names())}"
                        for n in ("wgmma", "gemv"))
        return (f"{error.message}; space fields are strategy and the strategies' config "
                f"fields: {', '.join(f.name for f in dataclasses.fields(TileConfig))}; {own}")
    if error.validator == "const" and error.json_path == "$.format":
        return f"{error.message}: this reader knows {FORMAT!r}"
    return error.message


def _values(path, where: str, value) -> list:
    """An integer, a list, or an inclusive range object -> the list of values."""
    if isinstance(value, list):
        return value
    if not isinstance(value, dict):
        return [value]
    lo, hi = value["from"], value["to"]
    if ("times" in value) == ("step" in value):
        raise TuningConfigError(path, where, "a range needs exactly one of 'times' (geometric) "
                                             "or 'step' (arithmetic)")
    if lo > hi:
        raise TuningConfigError(path, where, f"empty range: from={lo} > to={hi}")
    if "times" in value and lo == 0:
        raise TuningConfigError(path, where, "a geometric range cannot start at 0")
    out, v = [], lo
    while v <= hi:
        out.append(v)
        v = v * value["times"] if "times" in value else v + value["step"]
    return out


def _is_m_range(value) -> bool:
    return isinstance(value, dict) and "max" in value


def _m_range(path, where: str, value: dict) -> list:
    """{"max", "min", "multiple_of"} -> [Dim]: the problem is the range kernel serving it
    (deepgen/tuner/ranges.py)."""
    from deepgen.dims import Dim

    try:
        return [Dim(**value)]
    except SpecError as e:
        raise TuningConfigError(path, where, str(e)) from None


def _spec(path, where: str, **kw) -> GemmSpec:
    try:
        return GemmSpec(**kw)
    except SpecError as e:
        raise TuningConfigError(path, where, str(e)) from None


def _unique(values: list) -> list:
    return list(dict.fromkeys(values))


# ---------------------------------------------------------------------------------------------
# Legacy DeepGen files: {"BLOCK_SIZE_M": [32, 64], ...}


def _looks_legacy(data: dict) -> bool:
    from deepgen.compiler.strategies.simt.legacy import LEGACY_KEYS, LEGACY_SPEC_KEYS

    return any(k in LEGACY_KEYS or k in LEGACY_SPEC_KEYS for k in data)


def _from_legacy(path: Path, data: dict, pairs: list[tuple[str, object]]) -> TuningConfig:
    from deepgen.compiler.strategies.simt.legacy import (LEGACY_DTYPES, LEGACY_SPEC_KEYS,
                                                         from_legacy)

    notes = []
    counts: dict[str, int] = {}
    for key, _ in pairs:
        counts[key] = counts.get(key, 0) + 1
    for key, n in counts.items():
        if n > 1:
            notes.append(f"{key} appears {n} times; the last value is used")
    lists = {}
    for key, value in data.items():
        values = value if isinstance(value, list) else [value]
        if not values or not all(isinstance(v, int) and not isinstance(v, bool) for v in values):
            raise TuningConfigError(path, f"$.{key}", f"must be a non-empty list of integers, "
                                                      f"got {value!r}")
        lists[key] = values

    space: dict[str, list] = {}
    origin: dict[str, str] = {}  # field -> the key it came from (two spellings, one field)
    for key, values in lists.items():
        if key in LEGACY_SPEC_KEYS:
            continue
        mapped = []
        for i, v in enumerate(values):
            try:
                ((fname, fvalue),) = from_legacy({key: v}).items()
            except SpecError as e:
                where = f"$.{key}" if key in str(e).split(":", 1)[0] else f"$.{key}[{i}]"
                raise TuningConfigError(path, where, str(e)) from None
            mapped.append(fvalue)
        if fname in origin:
            notes.append(f"{key} and {origin[fname]} both set {fname}; {key} (later) is used")
        origin[fname] = key
        space[fname] = _unique(mapped)

    def spec_values(key: str, default: list) -> list:
        return lists.get(key, default)

    for key in ("M_SIZE", "N_SIZE", "K_SIZE"):
        if key not in lists:
            raise TuningConfigError(path, "$", f"{key}: missing (a legacy file names the "
                                               f"problem size in M_SIZE, N_SIZE and K_SIZE)")
    dtypes = {}
    for key in ("DATATYPE_A", "DATATYPE_B", "DATATYPE_C"):
        for i, v in enumerate(spec_values(key, [4])):
            if v not in LEGACY_DTYPES:
                raise TuningConfigError(path, f"$.{key}[{i}]", f"element size {v} is not one of "
                                                               f"{sorted(LEGACY_DTYPES)} (bytes)")
        dtypes[key] = [LEGACY_DTYPES[v] for v in spec_values(key, [4])]
    if dtypes["DATATYPE_A"] != dtypes["DATATYPE_B"]:
        raise TuningConfigError(path, "$.DATATYPE_B", f"{dtypes['DATATYPE_B']} differs from "
                                f"DATATYPE_A {dtypes['DATATYPE_A']}; A and B share one type")
    warp = spec_values("WARP_SIZE", [32])
    if len(warp) != 1 or warp[0] not in LEGACY_TARGETS:
        raise TuningConfigError(path, "$.WARP_SIZE", f"must be one of {sorted(LEGACY_TARGETS)} "
                                                     f"(one value), got {warp}")
    layouts = []
    for i, v in enumerate(spec_values("IS_ATRANS", [0])):
        if v not in (0, 1):
            raise TuningConfigError(path, f"$.IS_ATRANS[{i}]", f"must be 0 or 1, got {v}")
        layouts.append("TN" if v else "NN")
    specs = [_spec(path, "$", M=M, N=N, K=K, batch=b, dtype=dt, out_dtype=odt, layout=lay)
             for M, N, K, b, dt, odt, lay in itertools.product(
                 lists["M_SIZE"], lists["N_SIZE"], lists["K_SIZE"], spec_values("BATCH_SIZE", [1]),
                 _unique(dtypes["DATATYPE_A"]), _unique(dtypes["DATATYPE_C"]), _unique(layouts))]
    return TuningConfig(path=str(path), name=path.stem, target=LEGACY_TARGETS[warp[0]],
                        specs=_unique(specs), space=space, legacy=True, notes=notes)

"""The search space of one problem: the cartesian product of the listed values, completed with
derived fields and pruned, as a generator (no compile, no list of all points).

Fields absent from the space:
  - come from the base config: the default heuristic's config for the shape ("heuristic",
    the default) or TileConfig's fixed defaults ("fixed"). With "heuristic", a point of
    another kind than the heuristic's pick (mma="none" for f16, where the heuristic takes
    tensor cores) starts from the SIMT strategy's default config for the shape;
  - except derived ones, which are made consistent with what is listed:
      lanes_m*lanes_n = warp size         one of them listed: the other follows;
      BM = warps_m*lanes_m*TM (same on N)  SIMT: two of BM, warps_m, TM listed: the third
                                           follows; only BM: TM from the base, halved until
                                           it fits (with mma, TM/TN do not apply);
      warp_scatter_m <= TM, thread_scatter_m <= warp_scatter_m (same on N): the base's value
                                           capped;
      load_width_a/b, store_width          the widest vector (16 bytes), halved until valid.

Pruning, each point counted once under the first reason found:
  - consistency of listed structural fields (same wording as validate's messages);
  - tiles larger than the problem needs: a BM above max(M rounded up to a power of two, the
    smallest BM in the space) only adds idle threads (same for BN/N and BK/K);
  - duplicates: points that differ only in a field that has no effect there (kk_unroll = BK is
    the full unroll 0; reduce_c_contiguous without local_split_k): one is kept, with the
    field at the value it equals;
  - validate(cfg, spec, target): the target's limits and the spec's divisibility rules.
The report counts each reason with its numbers; `lines()` groups them by rule (the wording with
numbers as N) and shows the most frequent real instances of each. Candidates come out as their
strategy's config (SimtConfig or MmaSyncConfig, see compiler/strategies/); a space may list
`strategy` ("simt", "mma_sync") as well as `mma`.

A strategy with its own config fields and no flat lowering (wgmma, gemv: OWN_FIELDS) is
searched on those fields instead: a space naming `"strategy": ["wgmma"]` lists values of
WgmmaConfig's fields, and every point is that config, the given fields over the strategy's
default for the shape (`base` "heuristic": strategies.from_dict({"strategy": ..., **point},
spec, target), what resolve builds) or over the config class's defaults ("fixed"). Derived
fields, pruning (tiles larger than the problem needs, no-effect duplicates, the strategy's
validate) and the report are as above: see StrategySpace.
"""
from __future__ import annotations

import dataclasses
import functools
import itertools
import math
import random
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Iterator

from deepgen.compiler import strategies
from deepgen.compiler.config import TileConfig, default_config, validate
from deepgen.compiler.strategies.mma_sync import FOREIGN as NOT_MMA_SYNC
from deepgen.compiler.target import Target, get_target
from deepgen.spec import DTYPE_BYTES, GemmSpec, SpecError

# A space lists flat lowering-parameter fields (every strategy's, as tuning configs always
# have), plus "strategy" ("simt" is mma "none"; "mma_sync" the shape's MMA instruction).
FIELDS = {"strategy": None, **{f.name: f for f in dataclasses.fields(TileConfig)}}
BOOL_FIELDS = frozenset(n for n, f in FIELDS.items() if f is not None and f.type in ("bool", bool))
# Per axis: block tile, warps, lanes, thread tile; BM = warps_m * lanes_m * TM.
AXES = (("BM", "warps_m", "lanes_m", "TM"), ("BN", "warps_n", "lanes_n", "TN"))
STRUCTURE = ("strategy", "mma", "BM", "BN", "TM", "TN", "warps_m", "warps_n", "lanes_m", "lanes_n")
SCATTER = ("warp_scatter_m", "warp_scatter_n", "thread_scatter_m", "thread_scatter_n")
# Fields that validate checks only on their own: they reorder the work without changing any
# tile, so their values multiply the rest of the space instead of being re-validated with
# every tile (a guard test checks that this still holds for validate).
FREE = ("fetch_contiguous", "block_swizzle", "local_split_k", "reduce_c_contiguous")
WIDTHS = ("load_width_a", "load_width_b", "store_width")
# (field, when it has no effect, the value it is then the same as, why)
NO_EFFECT = (
    ("kk_unroll", lambda c: c.kk_unroll == c.BK, 0, "kk_unroll=BK is the full unroll (0)"),
    ("reduce_c_contiguous", lambda c: c.local_split_k == 1, False,
     "reduce_c_contiguous has no effect when local_split_k=1"),
) + tuple((name, lambda c: c.mma != "none", FIELDS[name].default,
           f"{name} does not apply to strategy mma_sync") for name in NOT_MMA_SYNC
          if name not in ("TM", "TN", "lanes_m", "lanes_n"))


@functools.lru_cache(maxsize=4096)  # the same few messages, millions of times
def reason_key(message: str) -> str:
    """'BM: must equal ... = 64, got 128' -> 'BM: must equal ... = N, got N': the template
    that groups the reasons of one rule."""
    return re.sub(r"(?<![A-Za-z_\d])\d+(?:x\d+)*", "N", message)


SHOW_VARIANTS = 3  # per rule, the most frequent concrete reasons shown by lines()


@dataclass
class SpaceReport:
    shape: str
    total: int  # points in the product of the listed values
    kept: int = 0
    pruned: Counter = field(default_factory=Counter)  # reason, with its numbers -> points

    def prune(self, reason: str, points: int = 1) -> None:
        if points:
            self.pruned[reason] += points

    def by_rule(self) -> Counter:
        """Points per rule (the reasons' template, numbers shown as N)."""
        out = Counter()
        for reason, n in self.pruned.items():
            out[reason_key(reason)] += n
        return out

    def groups(self) -> list[tuple[str, int, list[tuple[str, int]]]]:
        """[(rule, points, [(reason, points), ...] most frequent first)], largest rule first."""
        variants: dict[str, list] = {}
        for reason, n in self.pruned.most_common():
            variants.setdefault(reason_key(reason), []).append((reason, n))
        return sorted(((rule, sum(n for _, n in vs), vs) for rule, vs in variants.items()),
                      key=lambda g: -g[1])

    def to_dict(self) -> dict:
        return {"shape": self.shape, "total": self.total, "kept": self.kept,
                "pruned": dict(self.pruned.most_common()),
                "pruned_by_rule": dict(self.by_rule().most_common())}

    def lines(self) -> list[str]:
        """One line per rule with a real instance of it; a rule met with several values shows
        its most frequent instances (with their counts) and how many more there are."""
        share = 100.0 * (1 - self.kept / self.total) if self.total else 0.0
        out = [f"{self.shape}: {self.total} points -> {self.kept} after pruning "
               f"({share:.1f}% pruned)"]
        for rule, n, variants in self.groups():
            if len(variants) == 1:
                out.append(f"  {n:>10}  {variants[0][0]}")
                continue
            out.append(f"  {n:>10}  in {len(variants)} variants of: {rule}")
            for reason, k in variants[:SHOW_VARIANTS]:
                out.append(f"  {'':>10}  {k:>10}  {reason}")
            rest = variants[SHOW_VARIANTS:]
            if rest:
                out.append(f"  {'':>10}  {sum(k for _, k in rest):>10}  ... {len(rest)} more")
        return out


class Space:
    """Iterate the pruned candidates of one spec, each its strategy's config (SimtConfig,
    MmaSyncConfig); `report` fills as it goes. Points are built on the flat lowering
    parameters and validated by their strategy (compiler.strategies)."""

    def __new__(cls, spec: GemmSpec, space: dict[str, list], target: str | Target = "sm_90a",
                base: str = "heuristic"):
        if cls is Space and own_strategy(space) is not None:  # wgmma, gemv: their own fields
            return StrategySpace(spec, space, target, base)
        return super().__new__(cls)

    def __init__(self, spec: GemmSpec, space: dict[str, list], target: str | Target = "sm_90a",
                 base: str = "heuristic"):
        unknown = sorted(set(space) - set(FIELDS))
        if unknown:
            raise SpecError(f"{unknown[0]}: not a config field (fields: {list(FIELDS)})")
        self.spec = spec
        self.target = get_target(target) if isinstance(target, str) else target
        self.listed = {k: [bool(v) if k in BOOL_FIELDS else v for v in vals]
                       for k, vals in space.items()}
        self.base_kind = base
        self.bases: dict[str, TileConfig] = {}
        self.base = self._base(None)
        self.struct = [f for f in STRUCTURE if f in self.listed]
        self.free = [f for f in FREE if f in self.listed]
        self.core = [f for f in self.listed if f not in STRUCTURE and f not in FREE]
        sizes = lambda names: math.prod(len(self.listed[f]) for f in names)
        self.n_free, self.n_core = sizes(self.free), sizes(self.core)
        from .manifest import shape_key

        self.report = SpaceReport(shape_key(spec), sizes(self.listed))

    # -- the walk --------------------------------------------------------------------------

    def __iter__(self) -> Iterator[TileConfig]:
        report, rest = self.report, self.n_core * self.n_free
        structs, distinct = [], set()
        for values in itertools.product(*(self.listed[f] for f in self.struct)):
            derived, why = self._derive(dict(zip(self.struct, values)))
            key = tuple(sorted(derived.items()))
            if why is None and key in distinct:  # e.g. TM listed, but mma ignores it
                why = "duplicate: TM and TN do not apply with mma"
            distinct.add(key)
            if why:
                report.prune(why, rest)
            else:
                structs.append(derived)
        limits = self._tile_limits(structs)
        free_combos = None  # found with the first valid config (they do not depend on it)
        for s in structs:
            why = self._too_large(s, limits)
            if why:
                report.prune(why, rest)
                continue
            seen: dict = {}  # canonical point -> the rules that made it so
            for values in itertools.product(*(self.listed[f] for f in self.core)):
                cfg, why = self._complete({**s, **dict(zip(self.core, values))}, limits)
                if why is None:
                    cfg, same = _canonical(cfg)
                    why = _duplicate(same or seen[cfg]) if cfg in seen else None
                    seen.setdefault(cfg, same)
                if why is None:
                    cfg, why = self._fit(cfg)
                if why:
                    report.prune(why, self.n_free)
                    continue
                if free_combos is None:
                    free_combos, free_pruned = self._free_combos(cfg)
                for why, n in free_pruned.items():
                    report.prune(why, n)
                for combo in free_combos:
                    report.kept += 1
                    # the strategy's own config (fields of other strategies dropped)
                    yield strategies.from_flat(cfg.replace(**combo) if combo else cfg)

    def _base(self, mma: str | None) -> TileConfig:
        """The base config of points of kind `mma` (None: the base's own kind)."""
        if mma not in self.bases:
            if self.base_kind == "fixed":
                cfg = TileConfig()
            else:
                chosen = default_config(self.spec, self.target)
                if chosen.strategy not in ("simt", "mma_sync"):
                    # a kernel-building strategy (wgmma, gemv) has no flat fields to vary: the
                    # flat spaces start from the pass-based strategy that serves the shape
                    mma_sync = strategies.get("mma_sync")
                    flat = mma_sync if mma_sync.serves(self.spec, self.target) else \
                        strategies.get("simt")
                    chosen = flat.default_config(self.spec, self.target)
                cfg = chosen.lowering()
                if mma == "none" and cfg.mma != "none":  # the SIMT strategy's pick for the shape
                    cfg = strategies.get("simt").default_config(self.spec, self.target).lowering()
            self.bases[mma] = cfg if mma is None or cfg.mma == mma else cfg.replace(mma=mma)
        return self.bases[mma]

    def _derive(self, s: dict) -> tuple[dict, str | None]:
        """Complete the structural fields (lanes, warps, tiles) consistently, or say why not."""
        warp = self.target.warp_size
        if "strategy" in s:  # the strategy says whether the point has an MMA instruction
            name = s.pop("strategy")
            if name not in strategies.STRATEGIES:
                return s, f"strategy: unknown strategy {name!r}; known: {sorted(strategies.STRATEGIES)}"
            if name == "simt":
                mma = "none"
            else:
                pick = self._base(None).mma
                mma = pick if pick != "none" else ("m16n8k8" if self.spec.allow_tf32
                                                   else "m16n8k16")
            if s.get("mma", mma) != mma and (name == "simt") != (s["mma"] == "none"):
                return s, f"mma: {s['mma']!r} is not an instruction of strategy {name}"
            s.setdefault("mma", mma)
        base = self._base(s.get("mma"))
        lm, ln = s.get("lanes_m"), s.get("lanes_n")
        if lm is None and ln is None:
            lm, ln = base.lanes_m, base.lanes_n
        elif lm is None or ln is None:
            given, name = (ln, "lanes_n") if lm is None else (lm, "lanes_m")
            if given < 1 or warp % given:
                return s, f"{name}: must divide the warp size {warp} of {self.target.name}, " \
                          f"got {given}"
            lm, ln = (warp // ln, ln) if lm is None else (lm, warp // lm)
        elif lm * ln != warp:
            return s, (f"lanes_m*lanes_n: must equal the warp size {warp} of {self.target.name}, "
                       f"got {lm}*{ln}")
        out = {"mma": base.mma, "lanes_m": lm, "lanes_n": ln}
        for B, W, L, T in AXES:
            lanes, b, w, t = out[L], s.get(B), s.get(W), s.get(T)
            if base.mma != "none":  # warp tiles of B/W; the thread tile does not apply
                out.update({B: b or getattr(base, B), W: w or getattr(base, W),
                            T: getattr(base, T)})
                continue
            if b is None:
                w, t = w or getattr(base, W), t or getattr(base, T)
                b = w * lanes * t
            elif w is None:
                if t is None:  # the base's thread tile, halved until whole warps fit
                    t = getattr(base, T)
                    while t > 1 and b % (lanes * t):
                        t //= 2
                if b % (lanes * t) or b < lanes * t:
                    return s, f"{B}: must be a multiple of {L}*{T} = {lanes * t}, got {b}"
                w = b // (lanes * t)
            elif t is None:
                if b % (w * lanes) or b < w * lanes:
                    return s, f"{B}: must be a multiple of {W}*{L} = {w * lanes}, got {b}"
                t = b // (w * lanes)
            elif b != w * lanes * t:
                return s, f"{B}: must equal {W}*{L}*{T} = {w * lanes * t}, got {b}"
            out.update({B: b, W: w, T: t})
        return out, None

    def _tile_limits(self, structs: list[dict]) -> dict[str, int]:
        """Largest useful BM, BN, BK: the problem size rounded up to a power of two, or the
        smallest tile the space offers when that is larger (then only it is kept)."""
        spec = self.spec
        limits = {}
        for tile, dim in (("BM", spec.M), ("BN", spec.N), ("BK", spec.K)):
            offered = ([s[tile] for s in structs] if tile != "BK"
                       else self.listed.get("BK", [self.base.BK]))
            limits[tile] = max(1 << (dim - 1).bit_length(), min(offered, default=1))
        return limits

    def _too_large(self, s: dict, limits: dict[str, int]) -> str | None:
        for tile, dim in (("BM", "M"), ("BN", "N"), ("BK", "K")):
            if tile in s and s[tile] > limits[tile]:
                return (f"{tile}: {s[tile]} is larger than {dim}={getattr(self.spec, dim)} needs "
                        f"(at most {limits[tile]}; idle threads)")
        return None

    def _complete(self, values: dict, limits: dict) -> tuple[TileConfig, str | None]:
        """The config of one point: listed values, derived fields, the base for the rest."""
        listed, vec = self.listed, self.target.max_vector_bytes
        base = self._base(values["mma"])
        why = self._too_large({"BK": values["BK"]}, limits) if "BK" in values else None
        for *_, T in AXES if base.mma == "none" else ():
            axis = T[-1].lower()
            ws, ts = f"warp_scatter_{axis}", f"thread_scatter_{axis}"
            if ws not in listed:
                values[ws] = min(getattr(base, ws), values[T])
            if ts not in listed:
                values[ts] = min(getattr(base, ts), values.get(ws, getattr(base, ws)))
        elt = DTYPE_BYTES[self.spec.dtype]
        widest = {"load_width_a": vec // elt, "load_width_b": vec // elt,
                  "store_width": vec // DTYPE_BYTES[self.spec.out_dtype]}
        for name in WIDTHS:
            if name not in listed:
                values[name] = widest[name]
        return base.replace(**values), why

    def _fit(self, cfg: TileConfig) -> tuple[TileConfig, str | None]:
        """Validate; a failing vector width that the space does not list is halved and tried
        again (the widest valid vector is what the default heuristic picks too)."""
        while True:
            try:
                validate(cfg, self.spec, self.target)
                return cfg, None
            except SpecError as e:
                name = str(e).split(":", 1)[0]
                width = getattr(cfg, name, 0) if name in WIDTHS and name not in self.listed else 0
                if width <= 1:
                    return cfg, str(e)
                cfg = cfg.replace(**{name: width // 2})

    def _free_combos(self, anchor: TileConfig) -> tuple[list[dict], Counter]:
        """The combinations of the free fields that pass validate (checked once, on a valid
        config: they do not depend on it), and per reason how many do not."""
        combos, seen, pruned = [], {}, Counter()
        for values in itertools.product(*(self.listed[f] for f in self.free)):
            cfg, same = _canonical(anchor.replace(**dict(zip(self.free, values))))
            combo = {f: getattr(cfg, f) for f in self.free}
            key = tuple(combo.values())
            why = _duplicate(same or seen[key]) if key in seen else None
            seen.setdefault(key, same)
            if why is None:
                try:
                    validate(cfg, self.spec, self.target)
                except SpecError as e:
                    why = str(e)
            if why:
                pruned[why] += 1
            else:
                combos.append(combo)
        return combos, pruned


# -- strategies with their own config fields (no flat lowering) ---------------------------------

# A space naming one of these lists that strategy's own config fields (its config class in
# compiler/strategies/<name>/config.py) instead of the flat TileConfig fields.
OWN_FIELDS = ("wgmma", "gemv")


def own_strategy(space: dict) -> str | None:
    """The own-field strategy a space names (None: a flat space); it must be named alone."""
    names = list(space.get("strategy") or ())
    own = [n for n in names if n in OWN_FIELDS]
    if not own:
        return None
    if len(names) != 1:
        raise SpecError(f"strategy: {own[0]!r} has its own config fields, so a space names it "
                        f"alone (one file per strategy), got {names}")
    return own[0]


def _wgmma_derive(cfg, listed: dict, spec: GemmSpec, target: Target):
    """consumer_registers not listed: the base's, lowered to what a CTA is launched with at
    ctas_per_sm resident CTAs (216 for one consumer at 2 CTAs per SM, 96 for two; 232 stays
    at 1)."""
    from deepgen.compiler.strategies.wgmma import config as w

    if "consumer_registers" in listed or not cfg.warp_specialized or cfg.consumers < 1 \
            or cfg.ctas_per_sm < 1:
        return cfg
    # setmaxnreg moves registers within the CTA: what its threads are launched with
    pool = cfg.threads * w.register_cap(cfg) // w.WARPGROUP
    fit = (pool - cfg.producer_registers) // cfg.consumers // 8 * 8
    return cfg.replace(consumer_registers=fit) if 24 <= fit < cfg.consumer_registers else cfg


def _wgmma_canonical(cfg, spec: GemmSpec) -> tuple[object, list[str]]:
    """Fields without effect set to the value they then equal (see compiler/strategies/wgmma/
    kernel.py): the grouped order takes min(group_m, tile rows) (cluster pairs' rows for 2x1
    clusters); the register split only applies with warp specialization."""
    from deepgen.compiler.strategies.wgmma import WgmmaConfig

    same = []
    if cfg.BM >= 1 and cfg.cluster_m >= 1:
        rows = -(-(-(-spec.M // cfg.BM)) // cfg.cluster_m)
        if cfg.group_m > rows:
            cfg = cfg.replace(group_m=rows)
            same.append(f"group_m above the {rows} tile rows of M={spec.M} walks the same "
                        f"order as group_m={rows}")
    if not cfg.warp_specialized:
        fixed = {"producer_registers": WgmmaConfig.producer_registers,
                 "consumer_registers": WgmmaConfig.consumer_registers}
        if any(getattr(cfg, k) != v for k, v in fixed.items()):
            cfg = cfg.replace(**fixed)
            same.append("the register split does not apply without warp_specialized")
    return cfg, same


def _wgmma_idle(cfg, spec: GemmSpec) -> str | None:
    """A 2x1 (1x2) cluster on a problem of one tile row (column) leaves one CTA of each pair
    without a tile."""
    for name, dim, extent, tile, what in (("cluster_m", "M", spec.M, cfg.BM, "row"),
                                          ("cluster_n", "N", spec.N, cfg.BN, "column")):
        size, tiles = getattr(cfg, name), -(-extent // tile) if tile >= 1 else 0
        if size > 1 and tiles < size:
            return (f"{name}: {size} CTAs per cluster on the {tiles} tile {what}(s) of "
                    f"{dim}={extent} (idle CTAs)")
    return None


# name -> (derive(cfg, listed, spec, target), idle(cfg, spec) -> why or None,
#          canonical(cfg, spec) -> (cfg, why list))
OWN_RULES = {
    "wgmma": (_wgmma_derive, _wgmma_idle, _wgmma_canonical),
    "gemv": (lambda cfg, listed, spec, target: cfg, lambda cfg, spec: None,
             lambda cfg, spec: (cfg, [])),
}


class StrategySpace:
    """The pruned candidates of one spec in a space of one own-field strategy (wgmma, gemv):
    each point is the strategy's config, the listed values over the base (the strategy's
    default for the shape, what strategies.resolve completes a partial dict with, or the
    config class's defaults with base "fixed"); then derived fields (wgmma: consumer_registers
    fitted to ctas_per_sm when not listed); pruned, each point once, under the first of: tiles
    larger than the problem needs (BM/M, BN/N; wgmma: a 2x1 cluster on one tile row), duplicates (no-effect fields, see OWN_RULES),
    the strategy's validate."""

    def __init__(self, spec: GemmSpec, space: dict[str, list], target: str | Target = "sm_90a",
                 base: str = "heuristic"):
        self.spec = spec
        self.target = get_target(target) if isinstance(target, str) else target
        self.name = own_strategy(space)
        self.strategy = strategies.get(self.name)
        cls = self.strategy.config_class
        names = cls.field_names()
        self.listed = {k: list(v) for k, v in space.items() if k != "strategy"}
        unknown = [k for k in self.listed if k not in names]
        if unknown:
            raise SpecError(f"{unknown[0]}: not a field of strategy {self.name} "
                            f"(fields: {names})")
        for k, values in self.listed.items():
            for v in values:
                cls.from_dict({k: v})  # a wrong type: SpecError naming the field
        self.base_kind = base
        self.base = (self.strategy.complete({}, spec, self.target) if base == "heuristic"
                     else cls())
        self.derive, self.idle, self.canonical = OWN_RULES[self.name]
        self.limits = {}
        for tile, dim in (("BM", "M"), ("BN", "N")):
            if tile in names:
                offered = self.listed.get(tile, [getattr(self.base, tile)])
                size = getattr(spec, dim)
                self.limits[tile] = (dim, max(1 << (size - 1).bit_length(), min(offered)))
        from .manifest import shape_key

        self.report = SpaceReport(shape_key(spec), math.prod(len(v) for v in
                                                             self.listed.values()))

    def _config(self, given: dict):
        if self.base_kind == "heuristic":
            return self.strategy.complete(given, self.spec, self.target)
        return self.base.replace(**given)

    def __iter__(self):
        report, spec = self.report, self.spec
        seen: dict = {}  # canonical config -> the rules that made it so
        for values in itertools.product(*self.listed.values()):
            given = dict(zip(self.listed, values))
            cfg = self.derive(self._config(given), self.listed, spec, self.target)
            why = next((f"{tile}: {getattr(cfg, tile)} is larger than {dim}={getattr(spec, dim)} "
                        f"needs (at most {limit}; idle threads)"
                        for tile, (dim, limit) in self.limits.items()
                        if getattr(cfg, tile) > limit), None) or self.idle(cfg, spec)
            if why is None:
                cfg, same = self.canonical(cfg, spec)
                why = _duplicate(same or seen[cfg]) if cfg in seen else None
                seen.setdefault(cfg, same)
            if why is None:
                try:
                    self.strategy.validate(cfg, spec, self.target)
                except SpecError as e:
                    why = str(e)
            if why:
                report.prune(why)
                continue
            report.kept += 1
            yield cfg


def _canonical(cfg: TileConfig) -> tuple[TileConfig, list[str]]:
    """`cfg` with each no-effect field set to the value it then equals, and why."""
    same = []
    for name, no_effect, canonical, why in NO_EFFECT:
        if getattr(cfg, name) != canonical and no_effect(cfg):
            cfg = cfg.replace(**{name: canonical})
            same.append(why)
    return cfg, same


def _duplicate(same: list[str]) -> str:
    return f"duplicate: {same[0] if same else 'the same point twice'}"


def sample(configs, k: int | None, seed: int = 0) -> list:
    """All of `configs`, or a uniform sample of k of them (reservoir; order of the walk kept)."""
    if k is None:
        return list(configs)
    rng = random.Random(seed)
    chosen: list[tuple[int, object]] = []
    for i, item in enumerate(configs):
        if i < k:
            chosen.append((i, item))
        else:
            j = rng.randrange(i + 1)
            if j < k:
                chosen[j] = (i, item)
    return [item for _, item in sorted(chosen, key=lambda p: p[0])]

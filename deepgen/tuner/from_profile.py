"""Tuning configs from a profile (`deepgen tune --from-profile PROFILE.json`).

A profile (deepgen.profiler, profile.json) lists a model's GEMMs by shape with their time. The
shapes chosen are the slowest first: the first K (`top`), or as many as cover a fraction of
the profiled GEMM time (`cover`, default 0.9). Shapes DeepGen cannot tune (f64, unknown
dtypes) are skipped and counted. The epilogue is not part of a tuned shape: a bias or scale
reuses the plain shape's config (the tuned database's neighbour lookup matches shapes without
their epilogue, and deepgen.optimize routes by the plain shape).

A tuning config has one dtype, layout and search space for all its shapes, so the chosen
shapes are grouped by (dtype, layout, space) into one config each (format deepgen-tuning/1,
checked against schema.json by configfile.load). The spaces follow the shipped configs for
the target: on sm_90a, f16/bf16 GEMMs with M <= 8 search the gemv strategy
(gemv_decode.json), M <= 128 the wgmma strategy with swap_ab (wgmma_decode.json), larger M the
wgmma strategy (wgmma_llm.json); other targets and f32 search the flat mma_sync / SIMT fields
(f16_bf16_mma.json, fp32_simt.json). Imports neither torch nor MLIR.
"""
from __future__ import annotations

import json
import os
import re
from pathlib import Path

TUNABLE = ("f32", "f16", "bf16")
SPACES = {
    "gemv": {"strategy": ["gemv"], "rows": [1, 2, 4, 8], "warps": [2, 4, 8],
             "split_k": [1, 2, 4, 8], "unroll": [1, 2, 4, 8], "vec": [4, 8]},
    "wgmma_small": {"strategy": ["wgmma"], "swap_ab": [True], "BM": [64, 128],
                    "consumers": [1, 2], "stages": [4, 6, 8], "split_k": [1, 2, 4, 8],
                    "ctas_per_sm": [1, 2]},
    "wgmma": {"strategy": ["wgmma"], "BM": [128, 256], "consumers": [1, 2], "BN": [128, 256],
              "mode": ["cooperative", "pingpong"], "stages": [3, 4, 5, 6, 7],
              "persistent": [False, True], "cluster_m": [1, 2], "ctas_per_sm": [1, 2],
              "raster": ["row"], "group_m": [4, 8, 16]},
    "mma_sync": {"mma": ["m16n8k16"], "BM": [64, 128, 256], "BN": [64, 128, 256],
                 "BK": [32, 64], "warps_m": [1, 2, 4], "warps_n": [2, 4],
                 "shared_stages": [2, 3, 4], "async_copy": [True]},
    "simt": {"BM": [64, 128, 256], "BN": [64, 128, 256], "BK": [8, 16, 32], "TM": [4, 8],
             "TN": [4, 8], "lanes_m": [4, 8], "register_prefetch": [False, True]},
}
MAX_CANDIDATES = 24


class ProfileError(ValueError):
    """The profile cannot be turned into tuning configs; the message says why."""


def space_for(g: dict, target: str) -> str:
    """The name of the search space (SPACES) for a profiled GEMM on `target`."""
    if g["dtype"] == "f32":
        return "simt"
    if target == "sm_90a":
        if g["M"] <= 8 and g["batch"] == 1 and g["layout"] in ("NT", "NN"):
            return "gemv"
        return "wgmma_small" if g["M"] <= 128 else "wgmma"
    return "mma_sync"


def select(profile: dict, top: int | None = None, cover: float | None = None
           ) -> tuple[list[dict], dict]:
    """(the GEMMs to tune, slowest first; a summary: chosen, skipped, covered fraction)."""
    if top is not None and cover is not None:
        raise ProfileError("give --top-shapes or --cover, not both")
    if cover is None and top is None:
        cover = 0.9
    if cover is not None and not 0 < cover <= 1:
        raise ProfileError(f"--cover: must be in (0, 1], got {cover}")
    if top is not None and top < 1:
        raise ProfileError(f"--top-shapes: must be >= 1, got {top}")
    gemms = sorted(profile.get("gemms") or [], key=lambda g: -g["total_us"])
    if not gemms:
        raise ProfileError("the profile holds no GEMM (nothing to tune)")
    total = sum(g["total_us"] for g in gemms)
    tunable = [g for g in gemms if g["dtype"] in TUNABLE and min(g["M"], g["N"], g["K"]) >= 1]
    skipped = [g for g in gemms if g not in tunable]
    # merge shapes that differ only in their epilogue: they tune as one shape
    merged: dict[tuple, dict] = {}
    for g in tunable:
        k = (g["M"], g["N"], g["K"], g["batch"], g["dtype"], g["layout"])
        if k in merged:
            merged[k]["total_us"] += g["total_us"]
        else:
            merged[k] = {**g, "epilogue": "none"}
    ranked = sorted(merged.values(), key=lambda g: -g["total_us"])
    chosen, acc = [], 0.0
    for g in ranked:
        if top is not None and len(chosen) >= top:
            break
        if cover is not None and total and acc >= cover * total:
            break
        chosen.append(g)
        acc += g["total_us"]
    summary = {"chosen": len(chosen), "shapes": len(gemms), "skipped": len(skipped),
               "skipped_dtypes": sorted({g["dtype"] for g in skipped}),
               "covered": acc / total if total else 0.0}
    return chosen, summary


def configs(chosen: list[dict], *, name: str, target: str = "sm_90a",
            max_candidates: int | None = None) -> list[dict]:
    """One deepgen-tuning/1 config per (dtype, layout, space) of the chosen GEMMs."""
    groups: dict[tuple, list[dict]] = {}
    for g in chosen:
        groups.setdefault((g["dtype"], g["layout"], space_for(g, target)), []).append(g)
    out = []
    for (dtype, layout, space), gs in groups.items():
        shapes = []
        for g in gs:
            s = {"M": g["M"], "N": g["N"], "K": g["K"]}
            if g["batch"] != 1:
                s["batch"] = g["batch"]
            shapes.append(s)
        covered = ", ".join(f"{g['M']}x{g['N']}x{g['K']}" + (f" x{g['batch']}"
                            if g["batch"] != 1 else "") for g in gs)
        out.append({"format": "deepgen-tuning/1",
                    "name": _slug(f"{name}-{dtype}-{layout}-{space}"),
                    "description": f"From a profile ({name}): the {dtype} {layout} GEMMs "
                                   f"{covered}, slowest first; the {space} search space.",
                    "target": target, "dtype": dtype, "layouts": [layout], "shapes": shapes,
                    "base": "heuristic", "space": SPACES[space],
                    "max_candidates": max_candidates or MAX_CANDIDATES, "seed": 0})
    return out


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-").lower()


def write_configs(cfgs: list[dict], directory: str | os.PathLike) -> list[Path]:
    """Each config as DIR/<name>.json, written atomically; the paths."""
    from .journal import write_json

    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    paths = []
    for c in cfgs:
        path = d / f"{c['name']}.json"
        write_json(path, c)
        paths.append(path)
    return paths


def load_profile(path: str | os.PathLike) -> dict:
    p = Path(path)
    try:
        data = json.loads(p.read_text())
    except OSError as e:
        raise ProfileError(f"{p}: cannot read ({e.strerror or e})") from None
    except ValueError as e:
        raise ProfileError(f"{p}: not valid JSON ({e})") from None
    if not isinstance(data, dict) or data.get("format") != "deepgen-profile/1":
        raise ProfileError(f"{p}: not a deepgen profile (format deepgen-profile/1: "
                           f"`deepgen profile script.py` writes one)")
    return data

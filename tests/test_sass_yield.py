"""compiler/sass_yield.py: yield hints on block-scaled fp8's promotion FFMAs, an edit of two
control bits per instruction of the cubin (WgmmaConfig.ffma_yield). CPU side: the rule on
synthetic instructions, the ELF walk, and on a real kernel that the PTX, the resources and the
SASS text (but for the `.reuse` markers) stay the same while runs that had no yield hint get
them; the GPU side is the block bench's ffma_yield variant, checked against float64."""
from __future__ import annotations

import re
import struct

import pytest
from sass_text import sass_of

from deepgen.compiler import compile_artifact, sass_yield, strategies
from deepgen.compiler.target import get_target
from deepgen.spec import GemmSpec, SpecError

BLOCK = GemmSpec(M=4096, N=4096, K=7168, dtype="e4m3", out_dtype="bf16", layout="NT",
                 scale="block")
PLAIN_HI = sass_yield.NO_YIELD | sass_yield.REUSE_B  # no yield, operand B reused


def _code(instructions) -> bytearray:
    return bytearray(b"".join(struct.pack("<QQ", lo, hi) for lo, hi in instructions))


def _ffma(rb: int, hi: int = PLAIN_HI) -> tuple[int, int]:
    return sass_yield.FFMA_RRR | (rb << 32), hi


def _yields(code: bytearray) -> str:
    return "".join("y" if not struct.unpack_from("<QQ", code, at)[1] & sass_yield.NO_YIELD
                   else "." for at in range(0, len(code), 16))


def test_every_other_ffma_of_the_first_9_16ths_of_a_run_yields():
    """A run of 16 FFMA sharing one scale register: FFMA 0, 2, 4, 6, 8 yield and drop the
    reuse flag; the rest of the run and other instructions stay as they were."""
    other = (0x7A0, PLAIN_HI)  # not an FFMA: ends the run
    code = _code([other] + [_ffma(9)] * 16 + [other])
    assert sass_yield.interleave_text(code, 0, len(code)) == 5
    assert _yields(code) == "." + "y.y.y.y.y" + "." * 7 + "."
    for at in range(16, 16 * 17, 16):
        lo, hi = struct.unpack_from("<QQ", code, at)
        assert lo == _ffma(9)[0]
        assert bool(hi & sass_yield.REUSE_B) == (_yields(code)[at // 16] == ".")


def test_runs_with_a_yield_already_or_too_short_are_left_alone():
    ptxas_did = [_ffma(9)] * 7 + [_ffma(9, sass_yield.REUSE_B)] + [_ffma(9)] * 8
    short = [_ffma(9)] * (sass_yield.MIN_RUN - 1)
    for instructions in (ptxas_did, short):
        code = _code(instructions)
        before = bytes(code)
        assert sass_yield.interleave_text(code, 0, len(code)) == 0 and bytes(code) == before


def test_not_an_elf_cubin_is_refused():
    with pytest.raises(ValueError, match="not an ELF64 cubin"):
        sass_yield.interleave(b"PTX text")


@pytest.fixture(scope="module")
def pair():
    plain = compile_artifact(BLOCK, {"strategy": "wgmma", "ffma_yield": False}, "sm_90a",
                             keep_ir=False)
    hinted = compile_artifact(BLOCK, {"strategy": "wgmma", "ffma_yield": True}, "sm_90a",
                              keep_ir=False)
    return plain, hinted


def _sass_lines(binary: bytes) -> list[tuple[str, int]]:
    """(instruction text without `.reuse`, high word) of each instruction."""
    lines = sass_of(binary).splitlines()
    out = []
    for i, line in enumerate(lines):
        m = re.search(r"/\*[0-9a-f]{4,5}\*/\s+(.*?);\s*/\* 0x[0-9a-f]+ \*/", line)
        if m:
            hi = int(re.search(r"/\* (0x[0-9a-f]+) \*/", lines[i + 1]).group(1), 16)
            out.append((m.group(1).replace(".reuse", ""), hi))
    return out


def test_ffma_yield_changes_control_bits_only(pair):
    """The same PTX and resources; the cubin as long; every instruction's text the same but
    for reuse markers; each long FFMA run that had no yield hint now has some; a second pass
    changes nothing."""
    plain, hinted = pair
    assert plain.assembly == hinted.assembly and plain.resources == hinted.resources
    assert plain.binary != hinted.binary and len(plain.binary) == len(hinted.binary)
    a, b = _sass_lines(plain.binary), _sass_lines(hinted.binary)
    assert [t for t, _ in a] == [t for t, _ in b]
    changed = [i for i, (x, y) in enumerate(zip(a, b)) if x[1] != y[1]]
    assert changed and all(a[i][0].startswith("FFMA") for i in changed)
    for i in changed:  # the yield hint set (bit clear), the reuse flag dropped
        assert not b[i][1] & sass_yield.NO_YIELD and not b[i][1] & sass_yield.REUSE_B
        assert (a[i][1] ^ b[i][1]) & ~(sass_yield.NO_YIELD | sass_yield.REUSE_B) == 0
    assert sass_yield.interleave(hinted.binary) == (hinted.binary, 0)


def test_ffma_yield_is_block_scales_only():
    spec = GemmSpec(M=512, N=512, K=512, dtype="e4m3", out_dtype="bf16", layout="NT",
                    scale="tensor")
    with pytest.raises(SpecError, match=r"^ffma_yield: interleaves block scales' promotion"):
        strategies.resolve({"strategy": "wgmma", "ffma_yield": True}, spec, get_target("sm_90a"))

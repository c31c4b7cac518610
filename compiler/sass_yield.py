"""Yield hints on the promotion FFMAs of a Hopper cubin (an edit of control bits only).

Block-scaled fp8 kernels promote each K tile's wgmma sums into f32 accumulators with long runs
of FFMA (acc = partial * scale + acc) while the other consumer warpgroup's wgmma run. ptxas
13.5 marks some such runs with alternating yield hints and leaves others without any, so a
warp issues the whole run back to back. DeepGEMM found (README, "FFMA SASS interleaving") that
yielding on every other FFMA of such runs lets the scheduler interleave the wgmma issue of the
other warps with them; the NVCC 12.9 assembler does it itself for the runs it recognises.

`interleave(cubin)` walks each kernel's .text section (sm_90: 16-byte instructions) and, in
every run of at least MIN_RUN consecutive FFMA (register form) that has no yield hint yet,
sets the hint and drops the operand-reuse flag (a yielded warp cannot keep the reuse cache) on
FFMAs of the first 9/16 of the run: on the first FFMA that reads a new scale register (Rb) and
on every other one of a chain that reads the same. Nothing but these two control bits of
the instruction changes: the code, its dependences (stall counts, barriers) stay as ptxas
wrote them, so the result is the same computation.

Encoding facts used (sm_90, the 128-bit instruction as two little-endian 64-bit words):
opcode in bits 0..11 of the low word (0x223: FFMA R, R, R, R), Rb in bits 32..39 of the low
word; in the high word the yield bit 45 (0: yield) and the reuse flag of operand B bit 59.
"""
from __future__ import annotations

import struct

FFMA_RRR = 0x223
OPCODE_MASK = 0xFFF
NO_YIELD = 1 << 45  # high word: set = the warp does not yield after this instruction
REUSE_B = 1 << 59  # high word: operand B's register stays in the reuse cache
MIN_RUN = 8  # shorter runs of FFMA are not promotion blocks
INSTRUCTION = 16


def text_sections(cubin: bytes) -> list[tuple[int, int]]:
    """(file offset, size) of each `.text.<kernel>` section of an ELF64 cubin."""
    if cubin[:4] != b"\x7fELF" or cubin[4] != 2:
        raise ValueError("not an ELF64 cubin")
    shoff, = struct.unpack_from("<Q", cubin, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", cubin, 0x3A)

    def header(i):  # name, type, flags, addr, offset, size
        return struct.unpack_from("<IIQQQQ", cubin, shoff + i * shentsize)

    strtab = header(shstrndx)[4]
    out = []
    for i in range(shnum):
        name_off, _, _, _, offset, size = header(i)
        end = cubin.index(b"\0", strtab + name_off)
        if cubin[strtab + name_off:end].startswith(b".text."):
            out.append((offset, size))
    return out


def _words(code: bytearray, at: int) -> tuple[int, int]:
    return struct.unpack_from("<QQ", code, at)


def ffma_runs(code: bytes | bytearray, start: int, size: int) -> list[list[int]]:
    """Offsets of the instructions of each run of >= MIN_RUN consecutive FFMA (R, R, R, R)."""
    runs, cur = [], []
    for at in range(start, start + size, INSTRUCTION):
        lo, _ = _words(code, at)
        if lo & OPCODE_MASK == FFMA_RRR:
            cur.append(at)
            continue
        if len(cur) >= MIN_RUN:
            runs.append(cur)
        cur = []
    if len(cur) >= MIN_RUN:
        runs.append(cur)
    return runs


def interleave(cubin: bytes) -> tuple[bytes, int]:
    """The cubin with yield hints interleaved on its promotion FFMA runs (see the module
    docstring), and the number of instructions changed."""
    code = bytearray(cubin)
    changed = sum(interleave_text(code, start, size) for start, size in text_sections(cubin))
    return bytes(code), changed


def interleave_text(code: bytearray, start: int, size: int) -> int:
    """interleave() on the instructions of code[start:start + size], in place; returns the
    number changed."""
    changed = 0
    for run in ffma_runs(code, start, size):
        if any(not _words(code, at)[1] & NO_YIELD for at in run):
            continue  # ptxas interleaved this run itself
        seen, prev_kept, prev_rb = set(), False, None
        for at in run[:len(run) * 9 // 16]:
            lo, hi = _words(code, at)
            rb = (lo >> 32) & 0xFF
            if hi & REUSE_B and (rb not in seen or (prev_kept and prev_rb == rb)):
                struct.pack_into("<QQ", code, at, lo, hi & ~REUSE_B & ~NO_YIELD)
                changed += 1
                prev_kept = False
            else:
                prev_kept = bool(hi & REUSE_B)
            seen.add(rb)
            prev_rb = rb
    return changed

// The deepgen dialect, defined in IRDL and loaded into every context DeepGen creates.
//
// IRDL ops have no custom assembly: they print and parse in generic form, e.g.
//   "deepgen.gemm"(%A, %B, %C, %alpha, %beta) {layout = "NN", epilogue = "none", tile = {...}}
//       : (memref<...>, memref<...>, memref<...>, f32, f32) -> ()
// `epilogue` is the epilogue chain (deepgen.epilogue): a legacy name ("none" = alpha_beta,
// "relu" = alpha_beta+relu, "partial" = the empty chain) or its steps joined by "+", e.g.
// "alpha_beta+bias_col+gelu_tanh". After alpha and beta come the spec's named operands
// (GemmSpec.operands()), each optional: the bias (a 1-D memref of M or N elements) when the
// chain has a bias step, then scale_a and scale_b (f32, 1 element each or M and N) when the
// string attribute `scale` ("tensor" or "rowwise"; absent: none) says so. With several
// optional operands the generic form carries their counts: operandSegmentSizes =
// array<i32: 1, 1, 1, 1, 1, bias, scale_a, scale_b> (deepgen.dialects.ops writes it).
// Structural constraints live here; value checks (shapes agree with the layout, known
// attribute values) are in dialects/verify.py, which every DeepGen pass runs first.
irdl.dialect @deepgen {
  // C = epilogue(op(A) @ op(B)) (by default alpha * op(A) @ op(B) + beta * C), batch packed
  // in the leading dimension. An optional unit attribute `allow_tf32` lets f32 inputs be
  // multiplied as tf32.
  irdl.operation @gemm {
    %a = irdl.base "!builtin.memref"
    %b = irdl.base "!builtin.memref"
    %c = irdl.base "!builtin.memref"
    %f32 = irdl.is f32
    %bias = irdl.base "!builtin.memref"
    %scale_a = irdl.base "!builtin.memref"
    %scale_b = irdl.base "!builtin.memref"
    irdl.operands(a: %a, b: %b, c: %c, alpha: %f32, beta: %f32, bias: optional %bias,
                  scale_a: optional %scale_a, scale_b: optional %scale_b)
    %layout = irdl.base "#builtin.string"
    %epilogue = irdl.base "#builtin.string"
    %tile = irdl.base "#builtin.dictionary"
    irdl.attributes {"layout" = %layout, "epilogue" = %epilogue, "tile" = %tile}
  }

  // Tile-level ops between DeepGen's passes (all lowered by deepgen-vectorize).
  // Read `width` consecutive elements of an A (or B) tile along M (or N) at one K index.
  irdl.operation @load_frag {
    %src = irdl.base "!builtin.memref"
    %idx = irdl.is index
    %res = irdl.base "!builtin.vector"
    irdl.operands(src: %src, mn: %idx, k: %idx)
    irdl.results(frag: %res)
    %operand = irdl.base "#builtin.string"
    irdl.attributes {"operand" = %operand}
  }

  // Write `width` accumulator columns of C at (m, n) through the epilogue chain (by default
  // alpha * value + beta * C), or a raw store of the value (epilogue = "partial", split-K
  // partial sums). The named operands, each optional (operandSegmentSizes as deepgen.gemm's):
  // the bias when the chain has a bias step, then scale_a and scale_b (1 element each, or M
  // and N) when the value is to be scaled first.
  irdl.operation @store_frag {
    %val = irdl.base "!builtin.vector"
    %dst = irdl.base "!builtin.memref"
    %idx = irdl.is index
    %f32 = irdl.is f32
    %bias = irdl.base "!builtin.memref"
    %scale_a = irdl.base "!builtin.memref"
    %scale_b = irdl.base "!builtin.memref"
    irdl.operands(value: %val, dst: %dst, m: %idx, n: %idx, alpha: %f32, beta: %f32,
                  bias: optional %bias, scale_a: optional %scale_a, scale_b: optional %scale_b)
    %epilogue = irdl.base "#builtin.string"
    irdl.attributes {"epilogue" = %epilogue}
  }

  // Cooperative copy of one BMN x BK operand tile from global memory into registers:
  // every thread of the block loads `vectors` vectors of `width` elements.
  irdl.operation @tile_fetch {
    %src = irdl.base "!builtin.memref"
    %idx = irdl.is index
    %res = irdl.base "!builtin.vector"
    irdl.operands(src: %src, mn0: %idx, k0: %idx)
    irdl.results(regs: %res)
    %operand = irdl.base "#builtin.string"
    %dist = irdl.base "#builtin.dictionary"
    irdl.attributes {"operand" = %operand, "distribution" = %dist}
  }

  // The registers of a tile_fetch, written into the K-major shared-memory tile.
  irdl.operation @tile_stash {
    %regs = irdl.base "!builtin.vector"
    %dst = irdl.base "!builtin.memref"
    irdl.operands(regs: %regs, dst: %dst)
    %operand = irdl.base "#builtin.string"
    %dist = irdl.base "#builtin.dictionary"
    irdl.attributes {"operand" = %operand, "distribution" = %dist}
  }

  // Tensor-core path: the same cooperative copy straight from global to shared memory with
  // cp.async (no registers); where `valid` is false or a vector lies outside the matrix it
  // zero-fills. The result is the cp.async group of this thread's copies.
  irdl.operation @tile_copy_async {
    %src = irdl.base "!builtin.memref"
    %dst = irdl.base "!builtin.memref"
    %idx = irdl.is index
    %i1 = irdl.is i1
    %group = irdl.any
    irdl.operands(src: %src, mn0: %idx, k0: %idx, valid: %i1, dst: %dst)
    irdl.results(group: %group)
    %operand = irdl.base "#builtin.string"
    %dist = irdl.base "#builtin.dictionary"
    irdl.attributes {"operand" = %operand, "distribution" = %dist}
  }
}

// RUN: deepgen-opt %S/inputs/gemm_int8_rowwise.mlir -p deepgen-gemm-to-affine | FileCheck %s --check-prefix=AFFINE
// RUN: deepgen-opt %S/inputs/gemm_int8_rowwise.mlir -p deepgen-gemm-to-affine,deepgen-tile-gemm | FileCheck %s --check-prefix=TILE
// RUN: deepgen-opt %S/inputs/gemm_int8_rowwise.mlir -p deepgen-gemm-to-affine,deepgen-tile-gemm,deepgen-promote-shared,deepgen-mma-sync-pipeline,deepgen-vectorize | FileCheck %s --check-prefix=VEC
// RUN: sed -e 's/scale = "rowwise", //' %S/inputs/gemm_int8_rowwise.mlir | not deepgen-opt - -p deepgen-gemm-to-affine 2>&1 | FileCheck %s --check-prefix=ERR

// The affine description of int8: products of sign-extended i8 summed in i32, the sum
// converted to f32, then times scale_a[i] * scale_b[j] before the chain.
// AFFINE: arith.extsi {{.*}} : i8 to i32
// AFFINE: arith.muli {{.*}} : i32
// AFFINE: arith.addi {{.*}} : i32
// AFFINE: arith.sitofp {{.*}} : i32 to f32
// AFFINE: affine.load {{.*}} {deepgen.role = "scale_a"} : memref<64xf32>
// AFFINE: affine.load {{.*}} {deepgen.role = "scale_b"} : memref<96xf32>

// deepgen-tile-gemm: the scales are kernel arguments after the bias, m16n8k32 s8 MMAs into
// s32 accumulators (wrapping), converted once after the K loop; the stores take the bias and
// both scales.
// TILE: deepgen.args = ["A", "B", "C", "alpha", "beta", "bias", "scale_a", "scale_b"]
// TILE: nvvm.mma.sync {{.*}}intOverflowBehavior = #nvvm.mma_int_overflow<wrapped>{{.*}}multiplicandAPtxType = #nvvm.mma_type<s8>{{.*}}shape = #nvvm.shape<m = 16, n = 8, k = 32>{{.*}} -> !llvm.struct<(i32, i32, i32, i32)>
// TILE: arith.sitofp {{.*}} : vector<4xi32> to vector<4xf32>
// TILE: "deepgen.store_frag"({{.*}}) {epilogue = "alpha_beta+bias_col", operandSegmentSizes = array<i32: 1, 1, 1, 1, 1, 1, 1, 1, 1>}

// deepgen-vectorize: int8 fragments by ldmatrix x4 without transpose (16 x 32-byte blocks),
// the stores multiply by scale_a[row] and two columns of scale_b before alpha and the bias.
// VEC: nvgpu.ldmatrix {{.*}} {numTiles = 4 : i32, transpose = false} : memref<64x64xi8, {{.*}}> -> vector<4x4xi8>
// VEC: memref.load %arg6[{{.*}}] : memref<64xf32>
// VEC: vector.load %arg7[{{.*}}] {alignment = 8 : i64} : memref<96xf32>, vector<2xf32>
// VEC: arith.mulf
// VEC: vector.load %arg5[{{.*}}] {{.*}} : memref<96xf16>, vector<2xf16>

// The op's `scale` attribute and its scale operands go together.
// ERR: error: {{.*}}deepgen-gemm-to-affine: operands: scale 'none' takes 0 scale operands (scale_a and scale_b), got 2

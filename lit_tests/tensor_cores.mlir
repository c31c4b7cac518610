// RUN: deepgen-opt %S/inputs/gemm_bf16_tc.mlir -p deepgen-gemm-to-affine,deepgen-tile-gemm | FileCheck %s --check-prefix=TILE
// RUN: deepgen-opt %S/inputs/gemm_bf16_tc.mlir -p deepgen-gemm-to-affine,deepgen-tile-gemm,deepgen-promote-shared,deepgen-mma-sync-pipeline | FileCheck %s --check-prefix=RING
// RUN: deepgen-opt %S/inputs/gemm_bf16_tc.mlir -p deepgen-gemm-to-affine,deepgen-tile-gemm,deepgen-promote-shared,deepgen-mma-sync-pipeline,deepgen-vectorize | FileCheck %s --check-prefix=VEC
// RUN: sed -e 's/register_prefetch = true, smem_swizzle = true/smem_pad = 8/' %S/inputs/gemm_bf16_tc.mlir | deepgen-opt - -p deepgen-gemm-to-affine,deepgen-tile-gemm,deepgen-promote-shared,deepgen-mma-sync-pipeline,deepgen-vectorize | FileCheck %s --check-prefix=PAD
// RUN: sed -e 's/smem_swizzle = true/smem_swizzle = true, smem_pad = 8/' %S/inputs/gemm_bf16_tc.mlir | not deepgen-opt - -p deepgen-gemm-to-affine,deepgen-tile-gemm 2>&1 | FileCheck %s --check-prefix=ERR

// deepgen-tile-gemm: warp tiles of bf16 m16n8k16 MMAs on i32 fragments, and C through a
// 16-row shared slab per warp (4 warps x 16 x (64 + 8) f32 = 18432 bytes), read back as
// 8-element rows.
// TILE: deepgen.shared_bytes = 18432
// TILE: scf.for
// TILE: "deepgen.load_frag"{{.*}}operand = "A"{{.*}} -> vector<4xi32>
// TILE: nvvm.mma.sync {{.*}}multiplicandAPtxType = #nvvm.mma_type<bf16>{{.*}}shape = #nvvm.shape<m = 16, n = 8, k = 16>
// TILE: memref.view {{.*}} to memref<4x16x72xf32, #gpu.address_space<workgroup>>
// TILE: gpu.barrier
// TILE: vector.store {{.*}} : memref<16x72xf32, {{.*}}>, vector<2xf32>
// TILE: nvvm.bar.warp.sync
// TILE: vector.load {{.*}} : memref<16x72xf32, {{.*}}>, vector<8xf32>
// TILE: "deepgen.store_frag"({{.*}}) {epilogue = "none", operandSegmentSizes = array<i32: 1, 1, 1, 1, 1, 1, 0, 0, 0>} : (vector<8xf32>

// deepgen-pipeline with register_prefetch on tensor cores: a 3-stage cp.async ring whose
// first tile is waited for before the loop, the step-0 fragments carried across iterations
// (vector<4xi32> loop results), and the wait + barrier for the next tile placed before the
// last step's MMAs, followed by the next stage's step-0 fragment loads.
// RING: deepgen.shared_bytes = 49152
// RING: "deepgen.tile_copy_async"
// RING: nvgpu.device_async_wait {{.*}} {numGroups = 2 : i32}
// RING-NEXT: gpu.barrier
// RING: "deepgen.load_frag"
// RING: scf.for {{.*}} -> ({{.*}}vector<4xf32>, index, vector<4xi32>
// RING: "deepgen.tile_copy_async"
// RING: nvvm.mma.sync
// RING: nvgpu.device_async_wait {{.*}} {numGroups = 2 : i32}
// RING-NEXT: gpu.barrier
// RING-NOT: nvvm.mma.sync
// RING: "deepgen.load_frag"{{.*}} {operand = "A"}
// RING: nvvm.mma.sync {{.*}} {deepgen.kk = 16 : i64,
// RING-NOT: gpu.barrier
// RING: scf.yield
// RING: nvgpu.device_async_wait {{.*}} {numGroups = 0 : i32}

// deepgen-vectorize with smem_swizzle: the 16-byte chunk of every shared access is XORed
// with the row, for the cp.async writes and the ldmatrix reads alike.
// VEC: arith.xori
// VEC-NEXT: nvgpu.device_async_copy
// VEC: arith.xori
// VEC: nvgpu.ldmatrix {{.*}} {numTiles = 4 : i32, transpose = false}
// VEC: nvgpu.ldmatrix {{.*}} {numTiles = 4 : i32, transpose = true}

// Padded tiles instead (and no prefetch): no XOR, rows of 32 + 8 elements.
// PAD-NOT: arith.xori
// PAD: memref<3x128x40xbf16
// PAD-NOT: arith.xori

// ERR: invalid tile configuration: smem_pad: must be 0 with smem_swizzle, got 8

// RUN: deepgen-opt %S/inputs/gemm_256.mlir -p deepgen-gemm-to-affine,deepgen-tile-gemm | FileCheck %s
// RUN: not deepgen-opt %S/inputs/bad_tile.mlir -p deepgen-gemm-to-affine,deepgen-tile-gemm 2>&1 | FileCheck %s --check-prefix=ERR

// Blocks: a 2 x 2 grid of 128 x 128 tiles; 256 threads, each with an 8 x 8 register tile
// (16 accumulators of vector<4xf32>) carried through the K loop in steps of BK = 8.
// CHECK-NOT: func.func @gemm
// CHECK: gpu.module @deepgen_kernels [#nvvm.target<chip = "sm_90a"
// CHECK: gpu.func @deepgen_gemm(%{{.*}}: memref<1x256x64xf32>, %{{.*}}: memref<1x64x256xf32>, %{{.*}}: memref<1x256x256xf32>, %{{.*}}: f32, %{{.*}}: f32) kernel
// CHECK-SAME: deepgen.args = ["A", "B", "C", "alpha", "beta"]
// CHECK-SAME: deepgen.grid = array<i64: 2, 2, 1>
// CHECK-SAME: known_block_size = array<i32: 256, 1, 1>
// CHECK: %[[BY:.*]] = gpu.block_id  y
// CHECK: arith.muli %[[BY]], %{{.*}} {deepgen.role = "m0"}
// CHECK: %[[ACC:.*]]:16 = scf.for %[[K0:.*]] = %{{.*}} to %{{.*}} step %{{.*}} iter_args
// CHECK-SAME: -> (vector<4xf32>, vector<4xf32>, vector<4xf32>, vector<4xf32>, vector<4xf32>, vector<4xf32>, vector<4xf32>, vector<4xf32>, vector<4xf32>, vector<4xf32>, vector<4xf32>, vector<4xf32>, vector<4xf32>, vector<4xf32>, vector<4xf32>, vector<4xf32>)

// CHECK: "deepgen.load_frag"(%{{.*}}, %{{.*}}, %[[K0]]) {deepgen.kk = 0 : i64, operand = "A"} : (memref<256x64xf32, strided<[64, 1]>>, index, index) -> vector<4xf32>
// CHECK: "deepgen.load_frag"(%{{.*}}, %{{.*}}, %[[K0]]) {deepgen.kk = 0 : i64, operand = "B"} : (memref<64x256xf32, strided<[256, 1]>>, index, index) -> vector<4xf32>
// CHECK: vector.fma {{.*}} {deepgen.kk = 0 : i64} : vector<4xf32>
// CHECK: {deepgen.kk = 7 : i64, operand = "B"}
// CHECK: scf.yield
// CHECK-NEXT: } {deepgen.k_loop}
// CHECK-COUNT-16: "deepgen.store_frag"(%[[ACC]]#{{[0-9]+}}, {{.*}}) {epilogue = "none", operandSegmentSizes = array<i32: 1, 1, 1, 1, 1, 1, 0, 0, 0>}
// CHECK: gpu.return

// ERR: error: {{.*}}deepgen-tile-gemm: invalid tile configuration: BM: must equal warps_m*lanes_m*TM = 128, got 64

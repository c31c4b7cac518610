// RUN: deepgen-opt %S/inputs/gemm_splitk.mlir -p deepgen-gemm-to-affine,deepgen-tile-gemm,deepgen-split-k | FileCheck %s
// RUN: deepgen-opt %S/inputs/gemm_256.mlir -p deepgen-gemm-to-affine,deepgen-tile-gemm,deepgen-split-k | FileCheck %s --check-prefix=NOSPLIT
// RUN: not deepgen-opt %S/inputs/gemm_splitk.mlir -p deepgen-split-k 2>&1 | FileCheck %s --check-prefix=ERR

// K = 64 in 4 slices of 16: grid z grows to 4, the workspace W (one f32 partial tile per
// slice) becomes the last kernel argument, and each block walks only its slice of K.
// CHECK: gpu.func @deepgen_gemm({{.*}}, %[[W:.*]]: memref<4x256x256xf32>) kernel
// CHECK-SAME: deepgen.args = ["A", "B", "C", "alpha", "beta", "W"]
// CHECK-SAME: deepgen.grid = array<i64: 2, 2, 4>
// CHECK-SAME: deepgen.workspace_bytes = 1048576
// CHECK: %[[Z:.*]] = gpu.block_id  z
// CHECK: %[[SLICE:.*]] = arith.remui %[[Z]], %{{.*}} : index
// CHECK: %[[KB:.*]] = arith.muli %[[SLICE]], %{{.*}} : index
// CHECK: %[[KE:.*]] = arith.minui %{{.*}}, %{{.*}} : index
// CHECK: %[[WZ:.*]] = memref.subview %[[W]][%[[Z]], 0, 0] [1, 256, 256]
// CHECK: scf.for %{{.*}} = %[[KB]] to %[[KE]] step
// CHECK: "deepgen.store_frag"({{.*}}, %[[WZ]], {{.*}}) {epilogue = "partial", operandSegmentSizes = array<i32: 1, 1, 1, 1, 1, 1, 0, 0, 0>}
// The reduction kernel sums the 4 partials in a fixed order, then applies alpha/beta.
// CHECK: gpu.func @deepgen_splitk_reduce(%{{.*}}: memref<1x4x65536xf32>, %{{.*}}: memref<1x65536xf32>, %{{.*}}: f32, %{{.*}}: f32) kernel
// CHECK-SAME: deepgen.args = ["W", "C", "alpha", "beta"]
// CHECK-SAME: deepgen.grid = array<i64: 64, 1, 1>
// CHECK-SAME: deepgen.launch_order = 1
// CHECK-COUNT-4: vector.load {{.*}} : memref<1x4x65536xf32>, vector<4xf32>
// CHECK: vector.store {{.*}} : memref<1x65536xf32>, vector<4xf32>

// NOSPLIT-NOT: deepgen_splitk_reduce
// NOSPLIT-NOT: "partial"

// ERR: error: {{.*}}deepgen-split-k: no DeepGen GEMM kernel in the module

// RUN: deepgen-opt %S/inputs/gemm_splitk.mlir -p deepgen-gemm-to-affine,deepgen-tile-gemm,deepgen-block-swizzle | FileCheck %s
// RUN: deepgen-opt %S/inputs/gemm_256.mlir -p deepgen-gemm-to-affine,deepgen-tile-gemm,deepgen-block-swizzle | FileCheck %s --check-prefix=PLAIN
// RUN: not deepgen-opt %S/inputs/gemm_256.mlir -p deepgen-block-swizzle 2>&1 | FileCheck %s --check-prefix=ERR

// Grouped order, 2 block rows per group on a 2 x 2 grid: pid = by * 2 + bx, 4 blocks a group.
// CHECK: %[[BX:.*]] = gpu.block_id  x
// CHECK: %[[BY:.*]] = gpu.block_id  y
// CHECK: %[[ROW:.*]] = arith.muli %[[BY]], %c2
// CHECK: %[[PID:.*]] = arith.addi %[[ROW]], %[[BX]]
// CHECK: %[[GROUP:.*]] = arith.divui %[[PID]], %c4
// CHECK: %[[FIRST:.*]] = arith.muli %[[GROUP]]
// CHECK: %[[ROWS:.*]] = arith.minui
// CHECK: %[[IN:.*]] = arith.remui %[[PID]], %c4
// CHECK: %[[R:.*]] = arith.remui %[[IN]], %[[ROWS]]
// CHECK: %[[MB:.*]] = arith.addi %[[FIRST]], %[[R]]
// CHECK: %[[NB:.*]] = arith.divui %[[IN]], %[[ROWS]]
// CHECK: arith.muli %[[MB]], %{{.*}} {deepgen.role = "m0"}
// CHECK: arith.muli %[[NB]], %{{.*}} {deepgen.role = "n0"}
// CHECK-NOT: gpu.block_id  y

// block_swizzle = 1 leaves the row-major order alone.
// PLAIN: %[[BY:.*]] = gpu.block_id  y
// PLAIN-NOT: arith.minui
// PLAIN: arith.muli %[[BY]], %{{.*}} {deepgen.role = "m0"}

// ERR: error: {{.*}}deepgen-block-swizzle: no DeepGen GEMM kernel in the module

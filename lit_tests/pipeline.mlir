// RUN: deepgen-opt %S/inputs/gemm_256.mlir -p deepgen-gemm-to-affine,deepgen-tile-gemm,deepgen-promote-shared,deepgen-pipeline | FileCheck %s
// RUN: deepgen-opt %S/inputs/gemm_prefetch.mlir -p deepgen-gemm-to-affine,deepgen-tile-gemm,deepgen-promote-shared,deepgen-pipeline | FileCheck %s --check-prefix=REG
// RUN: not deepgen-opt %S/inputs/gemm_256.mlir -p deepgen-gemm-to-affine,deepgen-tile-gemm,deepgen-pipeline 2>&1 | FileCheck %s --check-prefix=ERR

// Two stages of each tile; the first tile is staged before the loop, the next one is fetched
// into registers while the current one is read, and one barrier ends each step.
// CHECK: deepgen.shared_bytes = 16384
// CHECK: memref.view {{.*}} to memref<2x8x128xf32, #gpu.address_space<workgroup>>
// CHECK: memref.view {{.*}} to memref<2x8x128xf32, #gpu.address_space<workgroup>>
// CHECK: "deepgen.tile_fetch"
// CHECK: "deepgen.tile_fetch"
// CHECK: "deepgen.tile_stash"
// CHECK: "deepgen.tile_stash"
// CHECK: gpu.barrier
// CHECK: scf.for %[[K0:[^ ]*]] = {{.*}} iter_args({{.*}}, %[[STAGE:[^ ]*]] = %{{.*}}) -> ({{.*}}, index)
// CHECK: %[[NEXT:.*]] = arith.addi %[[K0]], %{{.*}} : index
// CHECK: %[[HAS:.*]] = arith.cmpi ult, %[[NEXT]]
// CHECK: %[[REGS:.*]]:2 = scf.if %[[HAS]] -> (vector<1x4xf32>, vector<1x4xf32>) {
// CHECK: "deepgen.tile_fetch"(%{{.*}}, %{{.*}}, %[[NEXT]])
// CHECK: } else {
// CHECK: memref.subview %{{.*}}[%[[STAGE]], 0, 0] [1, 8, 128]
// CHECK: "deepgen.load_frag"
// CHECK: scf.if %[[HAS]] {
// CHECK: "deepgen.tile_stash"(%[[REGS]]#0
// CHECK: gpu.barrier
// CHECK-NOT: gpu.barrier
// CHECK: scf.yield

// With register_prefetch, the fragments of step 1 load before the FMAs of step 0.
// REG: {deepgen.kk = 0 : i64, operand = "B"}
// REG-NOT: vector.fma
// REG: {deepgen.kk = 1 : i64, operand = "A"}
// REG: vector.fma {{.*}} {deepgen.kk = 0 : i64}

// ERR: error: {{.*}}deepgen-pipeline: expected the single-buffered loop of deepgen-promote-shared

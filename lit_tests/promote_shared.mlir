// RUN: deepgen-opt %S/inputs/gemm_256.mlir -p deepgen-gemm-to-affine,deepgen-tile-gemm,deepgen-promote-shared | FileCheck %s
// RUN: not deepgen-opt %S/inputs/gemm_256.mlir -p deepgen-gemm-to-affine,deepgen-tile-gemm,deepgen-promote-shared,deepgen-promote-shared 2>&1 | FileCheck %s --check-prefix=TWICE
// RUN: not deepgen-opt %S/inputs/gemm_256.mlir -p deepgen-promote-shared 2>&1 | FileCheck %s --check-prefix=NOKERNEL

// Two K-major shared tiles of 8 x 128 f32 (4 KiB each) carved out of dynamic shared memory.
// CHECK: deepgen.shared_bytes = 8192
// CHECK: %[[SMEM:.*]] = gpu.dynamic_shared_memory : memref<?xi8, #gpu.address_space<workgroup>>
// CHECK: %[[AS:.*]] = memref.view %[[SMEM]][%{{.*}}][] : memref<?xi8, #gpu.address_space<workgroup>> to memref<8x128xf32, #gpu.address_space<workgroup>>
// CHECK: %[[BS:.*]] = memref.view %[[SMEM]][%{{.*}}][] : memref<?xi8, #gpu.address_space<workgroup>> to memref<8x128xf32, #gpu.address_space<workgroup>>
// CHECK: scf.for %[[K0:[^ ]*]] = {{.*}} {
// Cooperative copy at the top of each K step, then a barrier.
// CHECK: %[[RA:.*]] = "deepgen.tile_fetch"(%{{.*}}, %{{.*}}, %[[K0]]) {distribution = {contig_k = true, contiguous = true, threads = 256 : i64, tile_k = 8 : i64, tile_mn = 128 : i64, transpose = true, width = 4 : i64}, operand = "A"}
// CHECK: "deepgen.tile_stash"(%[[RA]], %[[AS]])
// CHECK: "deepgen.tile_fetch"
// CHECK-SAME: operand = "B"
// CHECK: "deepgen.tile_stash"({{.*}}, %[[BS]])
// CHECK-NEXT: gpu.barrier
// Fragments now come from shared memory at tile-local indices.
// CHECK: "deepgen.load_frag"(%[[AS]], %{{.*}}, %{{.*}}) {deepgen.kk = 0 : i64, operand = "A"} : (memref<8x128xf32, #gpu.address_space<workgroup>>, index, index) -> vector<4xf32>
// CHECK-NOT: "deepgen.load_frag"(%subview
// CHECK: gpu.barrier
// CHECK-NEXT: scf.yield

// TWICE: error: {{.*}}deepgen-promote-shared: the main loop already stages tiles in shared memory
// NOKERNEL: error: {{.*}}deepgen-promote-shared: no DeepGen GEMM kernel in the module (run deepgen-tile-gemm first)

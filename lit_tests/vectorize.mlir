// RUN: deepgen-opt %S/inputs/gemm_partial.mlir -p deepgen-gemm-to-affine,deepgen-tile-gemm,deepgen-promote-shared,deepgen-pipeline,deepgen-vectorize | FileCheck %s
// RUN: deepgen-opt %S/inputs/gemm_256.mlir -p deepgen-gemm-to-affine,deepgen-tile-gemm,deepgen-promote-shared,deepgen-vectorize | FileCheck %s --check-prefix=FULL
// RUN: not deepgen-opt %S/inputs/frag_outside_kernel.mlir -p deepgen-vectorize 2>&1 | FileCheck %s --check-prefix=ERR

// TN, 100 x 60 x 20 in 64 x 64 x 16 tiles: A is stored K x M, so tiles are fetched as
// 16-byte vectors along M; rows past K and columns past M are clamped and zeroed.
// CHECK-NOT: deepgen.tile_fetch
// CHECK-NOT: deepgen.load_frag
// CHECK: %[[K:.*]] = arith.minui %{{.*}}, %c19 : index
// CHECK: %[[M:.*]] = arith.minui %{{.*}}, %c96 : index
// CHECK: %[[V:.*]] = vector.load %{{.*}}[%[[K]], %[[M]]] {alignment = 16 : i64} : memref<20x100xf32, strided<[100, 1]>>, vector<4xf32>
// CHECK: arith.select %{{.*}}, %[[V]], %{{.*}} : vector<4xf32>
// CHECK: vector.store {{.*}} {alignment = 16 : i64} : memref<16x64xf32, strided<[64, 1]>, #gpu.address_space<workgroup>>, vector<4xf32>
// Fragments: 16-byte loads from the K-major shared tiles.
// CHECK: vector.load {{.*}} {alignment = 16 : i64} : memref<16x64xf32, strided<[64, 1], offset: ?>, #gpu.address_space<workgroup>>, vector<4xf32>
// Epilogue: stores of rows past M or columns past N are skipped; C is read only when beta != 0.
// CHECK: scf.if %{{.*}} {
// CHECK: arith.cmpf one
// CHECK: vector.store {{.*}} {alignment = 16 : i64} : memref<100x60xf32, strided<[60, 1]>>, vector<4xf32>

// NN 256^3: A is stored M x K, so its tile is fetched along K and transposed into the
// K-major shared tile with scalar stores; full tiles need no guards at all.
// FULL-NOT: arith.select
// FULL: vector.load {{.*}} : memref<256x64xf32, strided<[64, 1]>>, vector<4xf32>
// FULL-COUNT-4: memref.store {{.*}} : memref<8x128xf32, #gpu.address_space<workgroup>>
// FULL: vector.store {{.*}} : memref<8x128xf32, #gpu.address_space<workgroup>>, vector<4xf32>
// FULL-NOT: {{scf.if %[^ ]+ {$}}

// ERR: error: {{.*}}deepgen-vectorize: DeepGen tile ops must be inside a gpu.func kernel

// RUN: deepgen-opt %s -p deepgen-gemm-to-affine --split-input-file | FileCheck %s
// RUN: not deepgen-opt %S/inputs/bad_gemm.mlir -p deepgen-gemm-to-affine 2>&1 | FileCheck %s --check-prefix=ERR

// A TN bf16 GEMM with f32 output: A is stored K x M, loops run over the logical M, N, K.
// CHECK-LABEL: func.func @gemm
// CHECK-NOT: deepgen.gemm
// CHECK: affine.for %[[B:.*]] = 0 to 2 {
// CHECK: affine.for %[[I:.*]] = 0 to 33 {
// CHECK: affine.for %[[J:.*]] = 0 to 100 {
// CHECK: affine.for %[[K:.*]] = 0 to 20 iter_args(%[[S:.*]] = %{{.*}}) -> (f32) {
// CHECK: affine.load %arg0[%[[B]], %[[K]], %[[I]]] {deepgen.role = "A"} : memref<2x20x33xbf16>
// CHECK: affine.load %arg1[%[[B]], %[[K]], %[[J]]] {deepgen.role = "B"} : memref<2x20x100xbf16>
// CHECK: arith.extf {{.*}} : bf16 to f32
// CHECK: arith.mulf
// CHECK: arith.addf %[[S]]
// CHECK: arith.cmpf one, %arg4
// CHECK: scf.if
// CHECK: affine.load %arg2[%[[B]], %[[I]], %[[J]]] : memref<2x33x100xf32>
// CHECK: affine.store {{.*}}, %arg2[%[[B]], %[[I]], %[[J]]] {deepgen.role = "C"} : memref<2x33x100xf32>
// CHECK: deepgen.gemm_nest
// CHECK-SAME: deepgen.layout = "TN"
module {
  func.func @gemm(%a: memref<2x20x33xbf16>, %b: memref<2x20x100xbf16>, %c: memref<2x33x100xf32>, %alpha: f32, %beta: f32) {
    "deepgen.gemm"(%a, %b, %c, %alpha, %beta) {layout = "TN", epilogue = "none", tile = {}, operandSegmentSizes = array<i32: 1, 1, 1, 1, 1, 0, 0, 0>} : (memref<2x20x33xbf16>, memref<2x20x100xbf16>, memref<2x33x100xf32>, f32, f32) -> ()
    return
  }
}

// -----

// The relu epilogue clamps at zero; an NT layout reads B as [n, k].
// CHECK-LABEL: func.func @relu
// CHECK: affine.load %arg1[%{{.*}}, %[[J2:.*]], %[[K2:.*]]] {deepgen.role = "B"} : memref<1x8x4xf32>
// CHECK: arith.maximumf
module {
  func.func @relu(%a: memref<1x16x4xf32>, %b: memref<1x8x4xf32>, %c: memref<1x16x8xf32>, %alpha: f32, %beta: f32) {
    "deepgen.gemm"(%a, %b, %c, %alpha, %beta) {layout = "NT", epilogue = "relu", tile = {}, operandSegmentSizes = array<i32: 1, 1, 1, 1, 1, 0, 0, 0>} : (memref<1x16x4xf32>, memref<1x8x4xf32>, memref<1x16x8xf32>, f32, f32) -> ()
    return
  }
}

// ERR: error: {{.*}}deepgen-gemm-to-affine: operand B: K=5 differs from A's K=4

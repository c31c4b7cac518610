// RUN: deepgen-opt %S/inputs/gemm_epilogue.mlir -p deepgen-gemm-to-affine | FileCheck %s --check-prefix=AFFINE
// RUN: deepgen-opt %S/inputs/gemm_epilogue.mlir -p deepgen-gemm-to-affine,deepgen-tile-gemm,deepgen-promote-shared,deepgen-vectorize | FileCheck %s --check-prefix=VEC
// RUN: not deepgen-opt %S/inputs/bad_epilogue.mlir -p deepgen-gemm-to-affine --split-input-file 2>&1 | FileCheck %s --check-prefix=ERR

// The epilogue chain alpha_beta + bias_col + gelu_tanh (compiler/epilogue.py), in order, on
// the accumulator; C is read only when beta != 0; the bf16 bias is read at the column.
// AFFINE: %[[ACC:.*]] = affine.for %{{.*}} = 0 to 16 iter_args
// AFFINE: %[[SCALED:.*]] = arith.mulf %arg3, %[[ACC]] : f32
// AFFINE: %[[NZ:.*]] = arith.cmpf one, %arg4
// AFFINE: %[[AB:.*]] = scf.if %[[NZ]] -> (f32) {
// AFFINE:   affine.load %arg2[%[[B:.*]], %[[I:.*]], %[[J:.*]]] : memref<1x64x60xf32>
// AFFINE: } else {
// AFFINE:   scf.yield %[[SCALED]] : f32
// AFFINE: %[[BV:.*]] = affine.load %arg5[%[[J]]] {deepgen.role = "bias"} : memref<60xbf16>
// AFFINE: %[[BF:.*]] = arith.extf %[[BV]] : bf16 to f32
// AFFINE: %[[X:.*]] = arith.addf %[[AB]], %[[BF]] : f32
// AFFINE: arith.constant 0.797884583 : f32
// AFFINE: arith.constant 4.471500e-02 : f32
// AFFINE: %[[T:.*]] = math.tanh
// AFFINE: %[[HALF:.*]] = arith.mulf %cst_{{[0-9]+}}, %[[X]] : f32
// AFFINE: %[[ONE_T:.*]] = arith.addf %cst_{{[0-9]+}}, %[[T]] : f32
// AFFINE: %[[Y:.*]] = arith.mulf %[[HALF]], %[[ONE_T]] : f32
// AFFINE: affine.store %[[Y]], %arg2[%[[B]], %[[I]], %[[J]]] {deepgen.role = "C"}
// AFFINE: deepgen.epilogue = "alpha_beta+bias_col+gelu_tanh"
// AFFINE-SAME: epilogue = {bias_dtype = "bf16", steps = ["alpha_beta", "bias_col", "gelu_tanh"]}

// The kernel takes the bias as its last argument (deepgen.args names it) and links libdevice
// for tanh; every store applies the chain to a vector of 4 columns: the bias is one vector
// load at the store's column.
// VEC: gpu.module @deepgen_kernels [#nvvm.target<{{.*}}link = ["{{.*}}libdevice.10.bc"]>]
// VEC: gpu.func @deepgen_gemm({{.*}}, %[[BIAS:.*]]: memref<60xbf16>) kernel
// VEC-SAME: deepgen.args = ["A", "B", "C", "alpha", "beta", "bias"]
// VEC: scf.if %{{.*}} -> (vector<4xf32>) {
// VEC: vector.load %subview{{.*}} : memref<64x60xf32, strided<[60, 1]>>, vector<4xf32>
// VEC: vector.fma
// VEC: vector.load %[[BIAS]][%{{.*}}] {alignment = 8 : i64} : memref<60xbf16>, vector<4xbf16>
// VEC: arith.extf %{{.*}} : vector<4xbf16> to vector<4xf32>
// VEC: math.tanh %{{.*}} : vector<4xf32>
// VEC: vector.store {{.*}} : memref<64x60xf32, strided<[60, 1]>>, vector<4xf32>
// VEC: math.tanh
// VEC: math.tanh
// VEC: math.tanh
// VEC-NOT: math.tanh
// VEC-NOT: deepgen.store_frag
// VEC: gpu.return

// ERR: error: {{.*}}deepgen-gemm-to-affine: epilogue: unknown step 'gelu' in 'alpha_beta+gelu'; steps: alpha_beta, bias_row, bias_col, relu, gelu_tanh, silu
// ERR: error: {{.*}}deepgen-gemm-to-affine: operand bias: the epilogue has a bias step but the op has no bias operand
// ERR: error: {{.*}}deepgen-gemm-to-affine: operand bias: the col bias has 60 elements (N), got memref shape [64]

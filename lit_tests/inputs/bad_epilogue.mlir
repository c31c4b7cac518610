func.func @unknown_step(%a: memref<1x64x16xf32>, %b: memref<1x16x60xf32>, %c: memref<1x64x60xf32>, %alpha: f32, %beta: f32) {
  "deepgen.gemm"(%a, %b, %c, %alpha, %beta) {layout = "NN", epilogue = "alpha_beta+gelu", tile = {}, operandSegmentSizes = array<i32: 1, 1, 1, 1, 1, 0, 0, 0>} : (memref<1x64x16xf32>, memref<1x16x60xf32>, memref<1x64x60xf32>, f32, f32) -> ()
  return
}

// -----

func.func @no_bias(%a: memref<1x64x16xf32>, %b: memref<1x16x60xf32>, %c: memref<1x64x60xf32>, %alpha: f32, %beta: f32) {
  "deepgen.gemm"(%a, %b, %c, %alpha, %beta) {layout = "NN", epilogue = "alpha_beta+bias_col", tile = {}, operandSegmentSizes = array<i32: 1, 1, 1, 1, 1, 0, 0, 0>} : (memref<1x64x16xf32>, memref<1x16x60xf32>, memref<1x64x60xf32>, f32, f32) -> ()
  return
}

// -----

func.func @short_bias(%a: memref<1x64x16xf32>, %b: memref<1x16x60xf32>, %c: memref<1x64x60xf32>, %alpha: f32, %beta: f32, %bias: memref<64xf32>) {
  "deepgen.gemm"(%a, %b, %c, %alpha, %beta, %bias) {layout = "NN", epilogue = "alpha_beta+bias_col", tile = {}, operandSegmentSizes = array<i32: 1, 1, 1, 1, 1, 1, 0, 0>} : (memref<1x64x16xf32>, memref<1x16x60xf32>, memref<1x64x60xf32>, f32, f32, memref<64xf32>) -> ()
  return
}

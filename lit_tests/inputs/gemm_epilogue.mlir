// f32 NN 64 x 60 x 16 with the chain alpha_beta + bias_col + gelu_tanh: the bias is the
// last operand (N = 60 elements, bf16); a 64 x 64 tile (partial along N).
module attributes {deepgen.target = "sm_90a"} {
  func.func @gemm(%a: memref<1x64x16xf32>, %b: memref<1x16x60xf32>, %c: memref<1x64x60xf32>, %alpha: f32, %beta: f32, %bias: memref<60xbf16>) {
    "deepgen.gemm"(%a, %b, %c, %alpha, %beta, %bias) {layout = "NN", epilogue = "alpha_beta+bias_col+gelu_tanh", tile = {BM = 64 : i64, BN = 64 : i64, BK = 16 : i64, TM = 4 : i64, TN = 4 : i64, warps_m = 2 : i64, warps_n = 4 : i64, lanes_m = 8 : i64, lanes_n = 4 : i64, split_k = 1 : i64}, operandSegmentSizes = array<i32: 1, 1, 1, 1, 1, 1, 0, 0>} : (memref<1x64x16xf32>, memref<1x16x60xf32>, memref<1x64x60xf32>, f32, f32, memref<60xbf16>) -> ()
    return
  }
}

// f32 TN 100 x 60 x 20: every tile dimension is partial (64 x 64 x 16 tiles, 256 threads).
module attributes {deepgen.target = "sm_90a"} {
  func.func @gemm(%a: memref<1x20x100xf32>, %b: memref<1x20x60xf32>, %c: memref<1x100x60xf32>, %alpha: f32, %beta: f32) {
    "deepgen.gemm"(%a, %b, %c, %alpha, %beta) {layout = "TN", epilogue = "none", tile = {BM = 64 : i64, BN = 64 : i64, BK = 16 : i64, TM = 4 : i64, TN = 4 : i64, warps_m = 2 : i64, warps_n = 4 : i64, lanes_m = 8 : i64, lanes_n = 4 : i64, split_k = 1 : i64}, operandSegmentSizes = array<i32: 1, 1, 1, 1, 1, 0, 0, 0>} : (memref<1x20x100xf32>, memref<1x20x60xf32>, memref<1x100x60xf32>, f32, f32) -> ()
    return
  }
}

// BM = 64 cannot be covered by warps_m * lanes_m * TM = 2 * 8 * 8 = 128 rows.
module {
  func.func @gemm(%a: memref<1x256x64xf32>, %b: memref<1x64x256xf32>, %c: memref<1x256x256xf32>, %alpha: f32, %beta: f32) {
    "deepgen.gemm"(%a, %b, %c, %alpha, %beta) {layout = "NN", epilogue = "none", tile = {BM = 64 : i64}, operandSegmentSizes = array<i32: 1, 1, 1, 1, 1, 0, 0, 0>} : (memref<1x256x64xf32>, memref<1x64x256xf32>, memref<1x256x256xf32>, f32, f32) -> ()
    return
  }
}

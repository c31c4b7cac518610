// f32 NN 256 x 256 x 64 split into 4 K slices, block swizzle 2.
module attributes {deepgen.target = "sm_90a"} {
  func.func @gemm(%a: memref<1x256x64xf32>, %b: memref<1x64x256xf32>, %c: memref<1x256x256xf32>, %alpha: f32, %beta: f32) {
    "deepgen.gemm"(%a, %b, %c, %alpha, %beta) {layout = "NN", epilogue = "none", tile = {split_k = 4 : i64, block_swizzle = 2 : i64}, operandSegmentSizes = array<i32: 1, 1, 1, 1, 1, 0, 0, 0>} : (memref<1x256x64xf32>, memref<1x64x256xf32>, memref<1x256x256xf32>, f32, f32) -> ()
    return
  }
}

// A's K (4) and B's K (5) disagree: the verifier must name operand B.
func.func @gemm(%a: memref<1x16x4xf32>, %b: memref<1x5x8xf32>, %c: memref<1x16x8xf32>, %alpha: f32, %beta: f32) {
  "deepgen.gemm"(%a, %b, %c, %alpha, %beta) {layout = "NN", epilogue = "none", tile = {}, operandSegmentSizes = array<i32: 1, 1, 1, 1, 1, 0, 0, 0>} : (memref<1x16x4xf32>, memref<1x5x8xf32>, memref<1x16x8xf32>, f32, f32) -> ()
  return
}

// A fragment load outside any gpu.func: deepgen-vectorize cannot place it.
func.func @f(%m: memref<8x128xf32>, %i: index) -> vector<4xf32> {
  %v = "deepgen.load_frag"(%m, %i, %i) {operand = "A"} : (memref<8x128xf32>, index, index) -> vector<4xf32>
  return %v : vector<4xf32>
}

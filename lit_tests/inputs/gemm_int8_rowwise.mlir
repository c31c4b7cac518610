// int8 NT 64 x 96 x 128 with rowwise scales (scale_a: M = 64 values, scale_b: N = 96) and a
// column bias (f16, the output type's), on tensor cores: 64 x 64 x 64 block tiles of 2 x 2
// warps (32 x 32 warp tiles of m16n8k32 MMAs; N = 96 is a partial second tile), a 2-stage cp.async ring, direct stores.
module attributes {deepgen.target = "sm_80"} {
  func.func @gemm(%a: memref<1x64x128xi8>, %b: memref<1x96x128xi8>, %c: memref<1x64x96xf16>, %alpha: f32, %beta: f32, %bias: memref<96xf16>, %sa: memref<64xf32>, %sb: memref<96xf32>) {
    "deepgen.gemm"(%a, %b, %c, %alpha, %beta, %bias, %sa, %sb) {layout = "NT", epilogue = "alpha_beta+bias_col", scale = "rowwise", tile = {mma = "m16n8k32", BM = 64, BN = 64, BK = 64, warps_m = 2, warps_n = 2, load_width_a = 16, load_width_b = 16, store_width = 2, shared_stages = 2, async_copy = true, smem_swizzle = true}, operandSegmentSizes = array<i32: 1, 1, 1, 1, 1, 1, 1, 1>} : (memref<1x64x128xi8>, memref<1x96x128xi8>, memref<1x64x96xf16>, f32, f32, memref<96xf16>, memref<64xf32>, memref<96xf32>) -> ()
    return
  }
}

// bf16 NN 128 x 128 x 64 on tensor cores: one 128 x 128 x 32 block tile of 2 x 2 warps
// (64 x 64 warp tiles of m16n8k16 MMAs), a 3-stage cp.async ring, swizzled shared tiles,
// fragments prefetched across K tiles and C written through shared memory.
module attributes {deepgen.target = "sm_90a"} {
  func.func @gemm(%a: memref<1x128x64xbf16>, %b: memref<1x64x128xbf16>, %c: memref<1x128x128xbf16>, %alpha: f32, %beta: f32) {
    "deepgen.gemm"(%a, %b, %c, %alpha, %beta) {layout = "NN", epilogue = "none", tile = {mma = "m16n8k16", BM = 128, BN = 128, BK = 32, warps_m = 2, warps_n = 2, load_width_a = 8, load_width_b = 8, store_width = 8, shared_stages = 3, async_copy = true, register_prefetch = true, smem_swizzle = true, epilogue_smem = true}, operandSegmentSizes = array<i32: 1, 1, 1, 1, 1, 0, 0, 0>} : (memref<1x128x64xbf16>, memref<1x64x128xbf16>, memref<1x128x128xbf16>, f32, f32) -> ()
    return
  }
}

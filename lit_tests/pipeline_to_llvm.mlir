// RUN: deepgen-opt %S/inputs/gemm_256.mlir -p 'builtin.module(deepgen-gemm-to-affine,deepgen-tile-gemm,deepgen-split-k,deepgen-promote-shared,deepgen-pipeline,deepgen-block-swizzle,deepgen-vectorize,canonicalize,cse,expand-strided-metadata,lower-affine,convert-scf-to-cf,gpu.module(convert-gpu-to-nvvm{use-bare-ptr-memref-call-conv=1}),gpu.module(convert-vector-to-llvm,convert-ub-to-llvm),reconcile-unrealized-casts)' | FileCheck %s
// RUN: not deepgen-opt %S/inputs/gemm_256.mlir -p deepgen-gemm-to-affine,deepgen-no-such-pass 2>&1 | FileCheck %s --check-prefix=ERR

// DeepGen's passes and upstream's in one pipeline, down to the NVVM/LLVM dialects: bare
// pointers, 16-byte global and shared accesses, FMAs on vectors, a barrier.
// CHECK: llvm.func @deepgen_gemm(%{{.*}}: !llvm.ptr, %{{.*}}: !llvm.ptr, %{{.*}}: !llvm.ptr, %{{.*}}: f32, %{{.*}}: f32)
// CHECK-SAME: nvvm.kernel
// CHECK: llvm.load {{.*}} {alignment = 16 : i64} : !llvm.ptr -> vector<4xf32>
// CHECK: llvm.store {{.*}} {alignment = 16 : i64} : vector<4xf32>, !llvm.ptr<3>
// CHECK: nvvm.barrier
// CHECK: llvm.intr.fmuladd({{.*}}) : (vector<4xf32>, vector<4xf32>, vector<4xf32>) -> vector<4xf32>
// CHECK-NOT: deepgen.

// ERR: error: {{.*}}unknown DeepGen pass

"""deepgen.tuner: search tile configurations per GEMM shape and keep the fastest.

A run goes, one direction, through files in one directory (see tuning_configs/README.md):

    tuning config (configfile)  ->  candidates per shape, pruned (space)
      ->  compile in worker processes (compiling; Ray: ray_backend) -> kernels/<id>/ + index.json
      ->  check and time on GPUs, one worker process per GPU (benching, supervisor)
      ->  results.json, report table and plot (results)  ->  tuned database (database)

Every finished candidate is appended to journal.jsonl (journal), so an interrupted run resumes
where it stopped. The modules a GPU host needs to benchmark a bundle (manifest, journal,
supervisor, benching, results) import neither MLIR nor the compiler; configfile and space do
(they validate configs), and compiling imports MLIR inside its worker processes only.
"""

"""Run a module's `main()` as its command line would and print how long `main()` took, imports excluded.

    python benchmarks/timed_main.py MODULE[,PRELOADED...] [ARGS...]

MODULE and the PRELOADED modules are imported first; then `MODULE.main()` runs with `sys.argv` set to
ARGS, and the last line printed is `main() seconds: <s>`. eval_vs_official.py runs both pipelines
through it (each with its own interpreter), so the two sides' evaluation times exclude the same thing.
"""

import importlib
import sys
import time

if __name__ == "__main__":
    names = sys.argv[1].split(",")
    module = importlib.import_module(names[0])
    for name in names[1:]:
        importlib.import_module(name)
    sys.argv = [names[0], *sys.argv[2:]]
    start = time.perf_counter()
    code = module.main()
    print(f"main() seconds: {time.perf_counter() - start:.6f}", flush=True)
    sys.exit(code or 0)

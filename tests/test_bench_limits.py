"""benchmarks/bench.py's workers run numpy's BLAS on the threads they are told (the GEMM peak's 1-thread figure)."""
import json
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench.py"

PROBE = """
import json, sys
sys.path.insert(0, {here!r})
import bench                                   # a fresh process: numpy is not loaded before _limits
with bench._limits({n}):
    from threadpoolctl import threadpool_info
    print(json.dumps([i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"]))
"""


def test_limits_reach_the_blas_of_a_fresh_worker():
    """_limits(1) in a process that has not imported numpy yet still sets every BLAS to one thread."""
    code = PROBE.format(here=str(BENCH.parent), n=1)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    threads = json.loads(out.stdout.strip().splitlines()[-1])
    assert threads and all(t == 1 for t in threads), threads

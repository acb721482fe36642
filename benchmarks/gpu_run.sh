#!/usr/bin/env bash
# The H200 run of issue 18 in one command: the GPU benchmark (benchmarks/bench_gpu.py, about 5-8 minutes), then the
# gpu-marked tests (tests/test_gpu.py, about a minute). Results go to $OUT (the device tool's folder that comes back):
# gpu.json, bench_gpu.log, test_gpu.log, nvidia-smi.txt. Copy $OUT/gpu.json to benchmarks/results/gpu.json here and
# run `python benchmarks/report.py` to fill BENCHMARKS.md's GPU section.
#
# Through the device tool, from the repository root of a checkout holding the wheels in .whl/:
#     run(command="bash benchmarks/gpu_run.sh", carry=[".whl"], timeout_s=600)
#
# The H200 image lacks these packages (issue 18); fetch them once, here, as cp312 manylinux wheels (about 4 MB; the
# versions are constraints.txt's), into .whl/, which git ignores through .git/info/exclude (never commit wheels):
#     echo /.whl/ >> .git/info/exclude
#     python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#         --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
#         --platform manylinux1_x86_64 -d .whl \
#         pydantic==2.14.3 pydantic-core==2.50.4 annotated-types==0.8.0 typing-inspection==0.4.5 \
#         typing-extensions==4.16.0 pytrec-eval-terrier==0.5.11 bm25s==0.3.16 PyStemmer==3.1.0
# (pydantic-core, pytrec-eval-terrier and PyStemmer are compiled: if pip finds no wheel, add
# `--platform manylinux_2_N_x86_64` for N = 24, 31, 34 or 35.) The package itself runs from the working tree through
# PYTHONPATH: an offline `pip install -e .` cannot fetch its build backend.
set -uo pipefail

OUT=${OUT:-benchmarks/results}
mkdir -p "$OUT"
if ls .whl/*.whl >/dev/null 2>&1; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
        --find-links .whl .whl/*.whl || exit 1
    export PYTHONPATH="$PWD:/tmp/site"
else
    echo "no wheels in .whl/: the smoke test needs pydantic, bm25s and pytrec-eval-terrier (see this script's header)"
    export PYTHONPATH="$PWD"
fi
export PYTHONUNBUFFERED=1 HARNESS_HOME=/tmp/harness-home TOKENIZERS_PARALLELISM=false
nvidia-smi >"$OUT/nvidia-smi.txt" 2>&1
python3 -m pip list 2>/dev/null | grep -iE "^(torch|transformers|accelerate|pydantic|bm25s) " >>"$OUT/nvidia-smi.txt"

# The benchmark first (what the issue measures), under a limit that leaves the tests their time (600 s in all).
timeout 420 python3 benchmarks/bench_gpu.py --out "$OUT/gpu.json" 2>&1 | tee "$OUT/bench_gpu.log"
bench=${PIPESTATUS[0]}
timeout 150 python3 -m pytest tests/test_gpu.py -m gpu -q -p no:cacheprovider -x 2>&1 | tee "$OUT/test_gpu.log"
tests=${PIPESTATUS[0]}
echo "bench_gpu.py exit $bench, test_gpu.py exit $tests"
exit $(( bench != 0 || tests != 0 ))

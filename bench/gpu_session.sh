#!/usr/bin/env bash
# Everything a session with a lent CUDA machine measures, in one command (the machine is bare and short-lived):
# the gpu-marked tests, then every benchmark's CUDA side, then the faithfulness benchmark on that machine's CPU.
# Output goes to stdout and, when $OUT is set, to $OUT/gpu_session.log.
#
#   bash bench/gpu_session.sh [PART...]      PART: env tests gpu_input classify activations faithfulness overlay
#                                                  cpu16 cpu2 core featurevis gpu_sweep tests28 classify28 index
#                                                  issue28 (= env tests28 classify28 index: issue 28's figures, at
#                                                  most 545 s of limits, so one device call of 10 minutes holds it)
#
# Packages the machine's Python lacks can be put as wheels in .whl/ (ignored by git; name it in the device
# tool's carry): they are installed into /tmp/site first. For the lent H100 (Python 3.12, torch in its image):
#   pip download --no-deps --only-binary=:all: --python-version 3.12 -d .whl captum==0.9.0 ttach==0.0.3
#   pip download --no-deps --no-binary=:all: -d /tmp/src grad-cam==1.5.7 && pip wheel --no-deps -w .whl /tmp/src/grad_cam-1.5.7.tar.gz
set -u
cd "$(dirname "$0")/.."
PY=${PY:-python3}
LOG=${OUT:+$OUT/gpu_session.log}
LOG=${LOG:-/dev/null}
export PYTHONUNBUFFERED=1
if compgen -G ".whl/*.whl" >/dev/null; then
    $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
        && export PYTHONPATH=/tmp/site:$PWD || exit 1
    ln -sfn "$PWD/models" /tmp/site/inception_models  # what `pip install .` maps models/ to
else
    export PYTHONPATH=$PWD
fi
parts=${*:-env tests gpu_input classify activations faithfulness overlay cpu16 core}
parts=${parts//issue28/env tests28 classify28 index}

step() {  # step NAME SECONDS COMMAND...
    local name=$1 limit=$2; shift 2
    echo "=== $name: $* ($(date +%T))"
    timeout "$limit" "$@"
    echo "=== $name: exit $? ($(date +%T))"
}

{
for p in $parts; do
    case $p in
    env) step env 45 bash -c "nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv; nproc; \
        $PY -c 'import sys, torch, torchvision; print(sys.version.split()[0], torch.__version__, torchvision.__version__, torch.cuda.is_available(), torch.cuda.get_device_name() if torch.cuda.is_available() else None, torch.get_num_threads())'";;
    tests) step tests 240 $PY -m pytest -q -p no:cacheprovider -m gpu tests/core
           step gpu_path 120 $PY -m pytest -q -p no:cacheprovider tests/core/test_gpu_path.py tests/core/test_inference.py;;
    gpu_input) step gpu_input 120 $PY bench/bench_gpu_input.py;;
    gpu_sweep) step gpu_sweep 180 $PY bench/bench_gpu_input.py --sweep;;
    classify) step classify 240 $PY bench/bench_classify.py --device cuda;;
    activations) step activations 180 $PY bench/bench_activations.py --device cuda;;
    faithfulness) step faithfulness 240 $PY bench/bench_faithfulness.py --device cuda --repeat 5 \
                      --layouts 1x17,1x34,1x67,1x199;;
    overlay) step overlay 120 $PY bench/bench_overlay.py --device cuda;;
    cpu16) step cpu16 300 $PY bench/bench_faithfulness.py --device cpu --repeat 3 --threads "$(nproc)" \
               --layouts 1x17,2x9,2x17,4x5,4x9,8x3;;
    cpu2) step cpu2 400 $PY bench/bench_faithfulness.py --device cpu --repeat 1 --threads 2;;
    featurevis) step featurevis 240 $PY -m pytest -q -p no:cacheprovider tests/core/test_featurevis.py -k optimised_images;;
    tests28) step tests28 150 $PY -m pytest -q -p no:cacheprovider tests/core/test_gpu_path.py tests/core/test_inference.py;;
    classify28) step classify28 200 $PY bench/bench_classify.py --device cuda --model googlenet --repeats 10;;
    index) step index 150 $PY bench/bench_index.py --n 96 --rounds 3;;
    core) OMP_NUM_THREADS=2 step core 300 $PY -m pytest -q -p no:cacheprovider -n 12 tests/core;;
    *) echo "unknown part $p";;
    esac
done
} 2>&1 | tee "$LOG"

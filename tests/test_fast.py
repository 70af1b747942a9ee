"The in-memory data path, ensembles, multi-process training and the benchmark, through their command lines on tiny real data."
import csv, json, os, shutil, subprocess, sys
from pathlib import Path
import numpy as np
import pytest
from conftest import run, assert_one_line_error, ROOT, EMPTY_TORCH_HOME, CPU_ONLY

def _copy(tree, dst):
    shutil.copytree(tree, dst)
    return dst

def test_memory_and_png_paths_train_identically(tree, tmp_path):
    "Same seed, same split, same batches: the cache and fastai's PNG pipeline give the same model and submission (on the CPU)."
    d = _copy(tree, tmp_path/'p')
    subs = {}
    for flag in ([], ['--png']):
        name = 'png' if flag else 'memory'
        r = run('-m', 'mnist_fastai.train', '--epochs', '1', '--bs', '32', '--export', f'{name}.pkl', *flag, cwd=d, env=CPU_ONLY)
        assert r.returncode == 0, r.stderr
        assert ('PNG pipeline' if flag else 'batches from memory') in r.stdout
        r = run('-m', 'mnist_fastai.predict', '--model', f'models/{name}.pkl', '--out', f'submissions/{name}.csv', *flag, cwd=d, env=CPU_ONLY)
        assert r.returncode == 0, r.stderr
        subs[name] = (d/f'submissions/{name}.csv').read_text()
        log = (d/'images/training_log.csv').read_text().splitlines()[1].split(',')
        subs[name + '_loss'] = float(log[2])
    assert (d/'images/train.cache.npz').exists() and (d/'images/test.cache.npz').exists()
    assert subs['memory'] == subs['png']
    assert subs['memory_loss'] == pytest.approx(subs['png_loss'], rel=1e-4)

def test_cache_follows_the_tree(tree, tmp_path):
    "Replace a test PNG with another digit: the next prediction rebuilds the test cache and sees the new image."
    d = _copy(tree, tmp_path/'c')
    assert run('-m', 'mnist_fastai.train', '--epochs', '1', '--bs', '32', cwd=d).returncode == 0
    r1 = run('-m', 'mnist_fastai.predict', cwd=d)
    assert r1.returncode == 0 and 'decoded 60 PNGs' in r1.stdout
    r2 = run('-m', 'mnist_fastai.predict', cwd=d)
    assert r2.returncode == 0 and 'decoded' not in r2.stdout            # unchanged tree: the cache is reused
    probs = np.load(d/'submissions/submission.probs.npy')
    src = d/'images/test/00007.png'; tmp = src.with_suffix('.tmp')
    shutil.copy(d/'images/test/00001.png', tmp); os.replace(tmp, src)
    r3 = run('-m', 'mnist_fastai.predict', cwd=d)
    assert r3.returncode == 0 and 'the tree changed' in r3.stdout
    new = np.load(d/'submissions/submission.probs.npy')
    assert np.allclose(new[6], new[0], atol=1e-5) and not np.allclose(new[6], probs[6], atol=1e-5)

def test_corrupt_png_is_one_line(tree, tmp_path):
    d = _copy(tree, tmp_path/'k')
    bad = next((d/'images/train/3').glob('*.png'))
    bad.write_bytes(b'\x89PNG\r\n\x1a\n garbage')
    (d/'images/train.cache.npz').unlink(missing_ok=True)
    assert_one_line_error(run('-m', 'mnist_fastai.train', '--epochs', '1', cwd=d), f'{bad.relative_to(d)}: not a readable PNG')
    assert not (d/'images/train.cache.npz').exists()                    # nothing partial written

def test_ensemble_by_averaging_saved_probabilities(tree, tmp_path):
    "Members trained and predicted in separate processes, combined by a predict step that averages their probabilities."
    d = _copy(tree, tmp_path/'e')
    for s in (1, 2):
        assert run('-m', 'mnist_fastai.train', '--epochs', '1', '--bs', '32', '--seed', s, '--export', f'model-{s}.pkl', cwd=d).returncode == 0
        r = run('-m', 'mnist_fastai.predict', '--model', f'models/model-{s}.pkl', '--out', f'submissions/member-{s}.csv', cwd=d)
        assert r.returncode == 0, r.stderr
    p = [np.load(d/f'submissions/member-{s}.probs.npy') for s in (1, 2)]
    assert not np.allclose(p[0], p[1])                                  # different seeds, different models
    r = run('-m', 'mnist_fastai.predict', '--probs', 'submissions/member-1.probs.npy', 'submissions/member-2.probs.npy', cwd=d)
    assert r.returncode == 0, r.stderr
    assert 'averaged the probabilities of 2 ensemble members' in r.stdout and 'local accuracy' in r.stdout
    avg = np.load(d/'submissions/submission.probs.npy')
    assert np.allclose(avg, (p[0] + p[1])/2, atol=1e-6)
    labels = [int(l.split(',')[1]) for l in (d/'submissions/submission.csv').read_text().splitlines()[1:]]
    assert labels == avg.argmax(1).tolist()
    # both models in one predict call: the same average
    r = run('-m', 'mnist_fastai.predict', '--model', 'models/model-1.pkl', 'models/model-2.pkl', '--out', 'submissions/both.csv', cwd=d)
    assert r.returncode == 0, r.stderr
    assert np.allclose(np.load(d/'submissions/both.probs.npy'), avg, atol=1e-5)
    scores = (d/'submissions/scores.csv').read_text()
    assert '""ensemble"": 2' in scores                               # CSV doubles the JSON's quotes

def test_ensemble_errors(tree, tmp_path):
    d = _copy(tree, tmp_path/'x')
    np.save(d/'a.npy', np.full((60, 10), 0.1)); np.save(d/'b.npy', np.full((50, 10), 0.1)); np.save(d/'c.npy', np.ones((60, 3)))
    assert_one_line_error(run('-m', 'mnist_fastai.predict', '--probs', 'a.npy', 'b.npy', cwd=d), 'b.npy: 50 rows, but a.npy has 60')
    assert_one_line_error(run('-m', 'mnist_fastai.predict', '--probs', 'a.npy', 'c.npy', cwd=d), 'c.npy: shape (60, 3)')
    assert_one_line_error(run('-m', 'mnist_fastai.predict', '--probs', 'a.npy', 'nope.npy', cwd=d), 'nope.npy: no such probabilities file')
    assert_one_line_error(run('-m', 'mnist_fastai.predict', '--probs', 'a.npy', 'a.csv', cwd=d), 'a.csv: not a saved NumPy array')
    assert not (d/'submissions/submission.csv').exists()
    assert_one_line_error(run('-m', 'mnist_fastai.pipeline', '--ensemble', '0', cwd=d), '--ensemble 0')

def _launch(*args, cwd, mixed_precision='no', script=('-m', 'mnist_fastai.train')):
    "`accelerate launch` with 2 processes and no GPU in sight (on a GPU machine too): gloo, as on a machine without GPUs."
    env = dict(os.environ, PYTHONPATH=str(ROOT), MPLBACKEND='Agg', TORCH_HOME=str(EMPTY_TORCH_HOME), OMP_NUM_THREADS='1',
               MASTER_PORT=str(29500 + (os.getpid() + len(str(cwd))) % 1000), CUDA_VISIBLE_DEVICES='')
    cmd = [sys.executable, '-m', 'accelerate.commands.launch', '--multi_gpu', '--num_processes', '2', '--num_machines', '1',
           '--mixed_precision', mixed_precision, '--dynamo_backend', 'no', '--main_process_port', env['MASTER_PORT'],
           *script, *map(str, args)]
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)

def test_accelerate_two_cpu_processes(tree, tmp_path):
    "`accelerate launch -m mnist_fastai.train` with 2 CPU processes: data-parallel training, only rank 0 writes."
    d = _copy(tree, tmp_path/'a')
    r = _launch('--epochs', '2', '--bs', '32', cwd=d)
    assert r.returncode == 0, r.stdout + r.stderr
    assert 'training resnet18 on the CPU: 160 train / 40 valid images, bs 32, seed 42, batches from memory, 2 processes' in r.stdout
    assert r.stdout.count('kept epoch') == 1                 # one voice
    assert sorted(o.name for o in (d/'models').iterdir()) == ['best.pth', 'model.pkl']
    assert len((d/'images/training_log.csv').read_text().splitlines()) == 3
    # the exported model is a normal fastai learner; its recorded accuracy is the whole validation set's
    from mnist_fastai.predict import load_model
    from mnist_fastai.fastdl import fast_dls
    learn = load_model(d/'models/model.pkl', cpu=True)
    assert learn.train_settings['processes'] == 2
    dls = fast_dls(d/'images', valid_pct=0.2, seed=42, log=None, device='cpu')
    p, y = learn.get_preds(dl=dls.valid)
    acc = float((p.argmax(1) == y).float().mean())
    from mnist_fastai.callbacks import kept_row
    rows = [dict(epoch=i + 1, accuracy=float(l.split(',')[4]))
            for i, l in enumerate((d/'images/training_log.csv').read_text().splitlines()[1:])]
    assert acc == pytest.approx(kept_row(rows, 40)['accuracy'], abs=1e-6) and len(y) == 40   # the epoch kept

def test_accelerate_run_killed_then_resumed(tree, tmp_path):
    "Rank 0 killed just before its second checkpoint: the launch fails; `--resume` under accelerate carries on from epoch 2."
    d = _copy(tree, tmp_path/'k')
    r = _launch('rename', 'last.pth', '2', 'mnist_fastai.train', '--epochs', '3', '--bs', '32', cwd=d,
                script=(str(ROOT/'tests'/'kill_at.py'),))
    assert r.returncode != 0 and (d/'models/last.pth').exists() and not (d/'models/model.pkl').exists(), r.stdout + r.stderr
    import torch
    assert not any(k.startswith('module.') for k in torch.load(d/'models/last.pth', weights_only=False)['model'])   # the bare model's keys
    r = _launch('--epochs', '3', '--bs', '32', '--resume', cwd=d)
    assert r.returncode == 0, r.stdout + r.stderr
    assert 'resuming from models/last.pth: stage 1, epoch 1 of 3 done' in r.stdout
    assert sorted(o.name for o in (d/'models').iterdir()) == ['best.pth', 'model.pkl']      # finished: nothing left to resume
    assert [l.split(',')[0] for l in (d/'images/training_log.csv').read_text().splitlines()] == ['epoch', '1', '2', '3']

def test_accelerate_mixed_precision_refused(tree, tmp_path):
    "accelerate's own mixed precision would wrap the forward pass without fastai's loss scaling: refused in one line."
    d = _copy(tree, tmp_path/'mp')
    r = _launch('--epochs', '1', '--bs', '32', cwd=d, mixed_precision='fp16')
    assert r.returncode != 0
    lines = [l for l in r.stderr.splitlines() if l.startswith('error: ')]
    assert lines and all(l == lines[0] for l in lines), r.stderr
    assert "accelerate's mixed precision is set (fp16)" in lines[0] and '--mixed_precision no' in lines[0]
    assert not (d/'models').exists()

def test_pipeline_ensemble(tree, tmp_path):
    d = _copy(tree, tmp_path/'pe')
    r = run('-m', 'mnist_fastai.pipeline', '--epochs', '1', '--bs', '32', '--ensemble', '2', cwd=d)
    assert r.returncode == 0, r.stderr
    assert 'ensemble member 2/2 (seed 43)' in r.stdout and 'averaged the probabilities of 2 ensemble members' in r.stdout
    for f in ('models/model-42.pkl', 'models/model-43.pkl', 'submissions/member-42.csv', 'submissions/member-43.csv',
              'submissions/submission.csv'):
        assert (d/f).exists(), f
    rows = {r['file']: json.loads(r['settings']) for r in csv.DictReader(open(d/'submissions/scores.csv'))}
    ens = rows['submissions/submission.csv']                       # the leaderboard says how the ensemble was made
    assert ens['seed'] == [42, 43] and ens['bs'] == 32 and ens['size'] == 28 and ens['valid_pct'] == 0.2

def test_bench_cli(tree, tmp_path):
    "The bench works inside --work and removes only what it made there."
    (tmp_path/'w').mkdir(); (tmp_path/'w/keep.txt').write_text('the user\'s file')
    r = run('-m', 'mnist_fastai.bench', '--data', tree/'data', '--out', tmp_path, '--quick', '--work', tmp_path/'w', cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    import torch
    gpu = torch.cuda.is_available()
    res = json.loads((tmp_path/f"bench-{'gpu' if gpu else 'cpu'}-quick.json").read_text())
    assert (res['machine']['device'] == 'CPU') != gpu and res['machine']['torch']
    prec = res['machine']['precision'] if gpu else 'fp32'         # every training row says the precision it ran in
    assert {x['precision'] for x in res['results'] if x['group'] == 'training'} == {prec}
    names = [x['name'] for x in res['results']]
    assert 'raw PyTorch loop (no aug)' in names and 'in-memory cache (ours)' in names
    assert 'ratio' in r.stdout and 'machine:' in r.stdout
    assert [o.name for o in (tmp_path/'w').iterdir()] == ['keep.txt']

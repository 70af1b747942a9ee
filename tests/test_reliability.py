"""Interrupted runs lose nothing, two writers do not collide, a full disk is reported, runs are reproducible.

What is compared byte for byte here is the CPU's guarantee, so every process runs with the GPU hidden (on a GPU,
`tests/test_devices.py` checks resuming and reproducibility with `--deterministic`)."""
import os, random, signal, subprocess, sys, time, threading
from pathlib import Path
import numpy as np
import pytest, torch
from PIL import Image
from conftest import run as _run, assert_one_line_error, ROOT, EMPTY_TORCH_HOME, CPU_ONLY
from mnist_fastai.data import make_sample, read_csv

KILL_AT = ROOT/'tests'/'kill_at.py'    # a SIGKILL at a chosen instant: inside `open` or `os.replace` (see the file)

def run(*args, **kw): return _run(*args, env=CPU_ONLY, **kw)

def popen(*args, cwd):
    e = dict(os.environ, PYTHONPATH=str(ROOT), MPLBACKEND='Agg', TORCH_HOME=str(EMPTY_TORCH_HOME), **CPU_ONLY)
    return subprocess.Popen([sys.executable, *map(str, args)], cwd=cwd, env=e, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

def tree(dest):
    return {str(p.relative_to(dest)): p.read_bytes() for p in sorted(Path(dest).rglob('*')) if p.is_file() and not p.name.startswith('.csv2png')}

def wait_for(pred, proc, timeout=120, every=0.02):
    t = time.time()
    while not pred():
        assert proc.poll() is None, proc.communicate()
        assert time.time() - t < timeout
        time.sleep(every)

@pytest.fixture(scope='module')
def big(tmp_path_factory):
    "The whole built-in sample (5000 digits): enough that a conversion takes a moment."
    d = tmp_path_factory.mktemp('big'); make_sample(d/'data')
    assert run('-m', 'mnist_fastai.csv2png', '--dest', 'ref', cwd=d).returncode == 0
    return d

def pngs_in(folders) -> int:
    "How many files the folders hold, those that vanish while we count aside."
    n = 0
    for d in folders:
        try: n += len(os.listdir(d))
        except FileNotFoundError: pass
    return n

def test_csv2png_sigkill_then_rerun(big, tmp_path):
    """Killed part-way through a first run (the split built in a staging folder) and through a rerun over another CSV's
    tree (per-file atomic writes, stale files pruned at the end): what has a final name is whole, the next run ends
    byte-identical to an uninterrupted run and leaves no staging folder."""
    from mnist_fastai.data import write_csv
    x, y = read_csv(big/'data/train.csv')
    xt, _ = read_csv(big/'data/test.csv')
    other = tmp_path/'other'
    write_csv(other/'train.csv', 255 - x, (y + 1) % 10); write_csv(other/'test.csv', 255 - xt)   # every image and label differs
    rng = random.Random(0)
    for attempt in range(4):
        dest, first = tmp_path/f'images{attempt}', attempt % 2 == 0
        if first: started = lambda: pngs_in([*dest.glob('.train.*.tmp/*'), *dest.glob('train/*')])   # files written, wherever
        else:
            assert run('-m', 'mnist_fastai.csv2png', '--data', other, '--dest', dest, cwd=tmp_path).returncode == 0
            started = lambda: pngs_in((dest/'train').glob('[0-9]')) - len(x)                   # new (and temp) files beside the old
        k = rng.randint(1, 3 * len(x) // 4)                   # the kill lands after k of the 4000 training images
        p = popen('-m', 'mnist_fastai.csv2png', '--data', big/'data', '--dest', dest, cwd=tmp_path)
        wait_for(lambda: started() >= k, p, every=0.002)
        p.send_signal(signal.SIGKILL); p.wait()
        if first:
            assert list(dest.glob('.train.*.tmp')) and not (dest/'train').exists()   # killed while staging: no split yet
        for f in (dest/'train').glob('*/[0-9]*.png'):         # whatever has its final name is whole and right, old or new
            i, im = int(f.stem) - 1, np.array(Image.open(f))
            assert (int(f.parent.name), im.tolist()) in [(y[i], x[i].tolist()), ((y[i] + 1) % 10, (255 - x[i]).tolist())]
        for f in (dest/'test').glob('[0-9]*.png'):
            i, im = int(f.stem) - 1, np.array(Image.open(f))
            assert (im == xt[i]).all() or (im == 255 - xt[i]).all()
        r = run('-m', 'mnist_fastai.csv2png', '--data', big/'data', '--dest', dest, cwd=tmp_path)
        assert r.returncode == 0, r.stderr
        assert tree(dest) == tree(big/'ref')
        assert sorted(os.listdir(dest)) == ['.csv2png.lock', 'test', 'train']

def test_two_csv2png_at_once(big, tmp_path):
    from mnist_fastai.csv2png import dest_lock
    dest = tmp_path/'images'
    held = threading.Event(); release = threading.Event()
    def hold():
        with dest_lock(dest, log=lambda s: None): held.set(); release.wait(30)
    th = threading.Thread(target=hold); th.start(); held.wait(10)
    p = popen('-m', 'mnist_fastai.csv2png', '--data', big/'data', '--dest', dest, cwd=tmp_path)
    time.sleep(3); assert p.poll() is None            # it waits for the lock...
    release.set(); th.join()
    out, err = p.communicate(timeout=120)
    assert p.returncode == 0, err
    assert f'waiting: another csv2png (pid {os.getpid()}) is writing to {dest}' in out
    assert tree(dest) == tree(big/'ref')
    ps = [popen('-m', 'mnist_fastai.csv2png', '--data', big/'data', '--dest', tmp_path/'both', '--force', cwd=tmp_path) for _ in range(2)]
    assert [q.wait(120) for q in ps] == [0, 0]           # ...and two real runs at once end with one good tree
    assert tree(tmp_path/'both') == tree(big/'ref')

@pytest.mark.parametrize('first', [True, False], ids=['first-run', 'rerun'])
def test_disk_full_is_one_line(big, tmp_path, monkeypatch, capsys, first):
    """The disk fills up after 299 images: the kernel's own ENOSPC (the 300th new file's descriptor is pointed at
    /dev/full). In a first run (built in a staging folder) nothing appears; in a rerun (atomic per-file writes) the
    299 images written appear whole. Either way: one error line, exit 2, nothing partial under a final name."""
    import builtins
    import mnist_fastai.csv2png as c2p
    dest = tmp_path/'images'
    if not first:                                   # a tree to rerun over: every training PNG gone, the rest in place
        assert run('-m', 'mnist_fastai.csv2png', '--data', big/'data', '--dest', dest).returncode == 0
        for f in (dest/'train').glob('*/*.png'): f.unlink()
    real_open, real_os_open, n = builtins.open, os.open, [0]
    def fill(fd):
        n[0] += 1
        if n[0] >= 300:
            full = real_os_open('/dev/full', os.O_WRONLY); os.dup2(full, fd); os.close(full)
    def open_(f, mode='r', *a, **k):                # a rerun's temp files
        fh = real_open(f, mode, *a, **k)
        if 'x' in mode and str(f).endswith('.tmp'): fill(fh.fileno())
        return fh
    def os_open(f, flags, *a, **k):                 # a first run's files in the staging folder
        fd = real_os_open(f, flags, *a, **k)
        if flags & os.O_CREAT and str(f).endswith('.png'): fill(fd)
        return fd
    monkeypatch.setattr(builtins, 'open', open_); monkeypatch.setattr(os, 'open', os_open)
    with pytest.raises(SystemExit) as e: c2p.main(data=str(big/'data'), dest=str(dest), workers=1)   # the CLI's function, in-process
    monkeypatch.undo()
    assert n[0] >= 300 and e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith('error: ') and 'No space left on device' in err[0], err
    x, y = read_csv(big/'data/train.csv')
    files = list((dest/'train').rglob('*.png'))
    assert not list(dest.rglob('.*.tmp'))           # no temp file, no staging folder
    if first: assert sorted(os.listdir(dest)) == ['.csv2png.lock'] and not files
    else: assert len(files) == 299 and len(list((dest/'test').glob('*.png'))) == 1000
    for f in files: assert (np.array(Image.open(f)) == x[int(f.stem) - 1]).all()

@pytest.fixture(scope='module')
def tiny(tmp_path_factory):
    d = tmp_path_factory.mktemp('tiny'); make_sample(d/'data', n_test=100, n_train=300)
    assert run('-m', 'mnist_fastai.csv2png', cwd=d).returncode == 0
    r = run('-m', 'mnist_fastai.train', '--epochs', '3', '--bs', '32', '--models', 'mref', '--plots', 'pref', cwd=d)
    assert r.returncode == 0, r.stderr
    assert run('-m', 'mnist_fastai.predict', '--model', 'mref/model.pkl', '--out', 'ref.csv', cwd=d).returncode == 0
    return d

def test_train_sigkill_then_resume(tiny):
    "Killed just before the second epoch's checkpoint replaces the first (the same instant on any device): resumed, the run ends as an uninterrupted one."
    d = tiny
    p = popen(KILL_AT, 'rename', 'last.pth', '2', 'mnist_fastai.train', '--epochs', '3', '--bs', '32', '--models', 'm', '--plots', 'p', cwd=d)
    out = p.communicate(timeout=600)
    assert p.returncode == -signal.SIGKILL, out
    assert not (d/'m/model.pkl').exists()
    torch.load(d/'m/last.pth', weights_only=False); torch.load(d/'m/best.pth')   # whole files, not half-written
    r = run('-m', 'mnist_fastai.train', '--epochs', '3', '--bs', '32', '--models', 'm', '--plots', 'p', '--resume', cwd=d)
    assert r.returncode == 0, r.stderr
    assert 'resuming from m/last.pth: stage 1, epoch 1 of 3 done' in r.stdout
    assert sorted(o.name for o in (d/'m').iterdir()) == ['best.pth', 'model.pkl']   # nothing to resume, no temp file left
    cut = lambda f: [l.rsplit(',', 1)[0] for l in (d/f).read_text().splitlines()]   # all but the seconds column
    assert cut('p/training_log.csv') == cut('pref/training_log.csv')                 # the schedule went on, not restarted
    assert run('-m', 'mnist_fastai.predict', '--model', 'm/model.pkl', '--out', 'resumed.csv', cwd=d).returncode == 0
    assert (d/'resumed.csv').read_bytes() == (d/'ref.csv').read_bytes()

def test_resume_with_weight_average(tiny):
    "With --ema the checkpoint holds the weights as trained and their average: killed and resumed, the run ends as an uninterrupted one."
    d, args = tiny, ('--epochs', '3', '--bs', '32', '--ema', '0.9')
    r = run('-m', 'mnist_fastai.train', *args, '--models', 'eref', '--plots', 'peref', cwd=d)
    assert r.returncode == 0, r.stderr
    p = popen(KILL_AT, 'rename', 'last.pth', '2', 'mnist_fastai.train', *args, '--models', 'em', '--plots', 'pem', cwd=d)
    out = p.communicate(timeout=600)
    assert p.returncode == -signal.SIGKILL, out
    ck = torch.load(d/'em/last.pth', weights_only=False)
    assert ck['average']['n'] == 7 and ck['settings']['ema'] == 0.9   # one epoch: 240 images at bs 32, the last part-batch dropped
    r = run('-m', 'mnist_fastai.train', *args, '--models', 'em', '--plots', 'pem', '--resume', cwd=d)
    assert r.returncode == 0, r.stderr
    cut = lambda f: [l.rsplit(',', 1)[0] for l in (d/f).read_text().splitlines()]
    assert cut('pem/training_log.csv') == cut('peref/training_log.csv')
    for m, out in (('eref', 'eref.csv'), ('em', 'em.csv')):
        assert run('-m', 'mnist_fastai.predict', '--model', f'{m}/model.pkl', '--out', out, cwd=d).returncode == 0
    assert (d/'em.csv').read_bytes() == (d/'eref.csv').read_bytes()
    assert cut('peref/training_log.csv') != cut('pref/training_log.csv')             # validated on the average, not the weights

def test_resume_refuses_other_settings(tiny):
    d = tiny
    p = popen('-m', 'mnist_fastai.train', '--epochs', '3', '--bs', '32', '--models', 'm2', '--plots', 'p2', cwd=d)
    wait_for(lambda: (d/'m2/last.pth').exists(), p)
    p.send_signal(signal.SIGKILL); p.wait()
    assert_one_line_error(run('-m', 'mnist_fastai.train', '--epochs', '4', '--bs', '32', '--models', 'm2', '--plots', 'p2', '--resume', cwd=d),
                          'm2/last.pth: saved by a run with other settings')

def test_predict_sigkill(tiny):
    "Killed while writing the submission, or after writing it but before the rename: the old submission is untouched."
    d = tiny
    for where in ('open', 'rename'):
        (d/'k.csv').write_text('the previous submission\n')
        p = subprocess.run([sys.executable, KILL_AT, where, 'k.csv', '1', 'mnist_fastai.predict', '--model', 'mref/model.pkl', '--out', 'k.csv'], cwd=d,
                           env=dict(os.environ, PYTHONPATH=str(ROOT), MPLBACKEND='Agg', TORCH_HOME=str(EMPTY_TORCH_HOME), **CPU_ONLY),
                           capture_output=True, text=True, timeout=600)
        assert p.returncode == -signal.SIGKILL, (where, p.returncode, p.stderr)
        assert (d/'k.csv').read_text() == 'the previous submission\n', where
        tmp = list(d.glob('.k.csv.*.tmp'))                # what the killed process was writing, under its temporary name
        assert len(tmp) == 1, where
        if where == 'rename': assert tmp[0].read_bytes() == (d/'ref.csv').read_bytes()
        tmp[0].unlink()
    assert run('-m', 'mnist_fastai.predict', '--model', 'mref/model.pkl', '--out', 'k.csv', cwd=d).returncode == 0
    assert (d/'k.csv').read_bytes() == (d/'ref.csv').read_bytes()

def test_same_seed_same_submission(tmp_path):
    for run_dir in ('a', 'b'):
        (tmp_path/run_dir).mkdir(); make_sample(tmp_path/run_dir/'data', n_test=100, n_train=300)
        r = run('-m', 'mnist_fastai.pipeline', '--epochs', '2', '--bs', '32', cwd=tmp_path/run_dir)
        assert r.returncode == 0, r.stderr
    a, b = (tmp_path/'a/submissions/submission.csv').read_bytes(), (tmp_path/'b/submissions/submission.csv').read_bytes()
    assert a == b
    assert (tmp_path/'a/submissions/submission.probs.npy').read_bytes() == (tmp_path/'b/submissions/submission.probs.npy').read_bytes()

def test_csv2png_memory_stays_bounded(tmp_path):
    "Converting 20 000 rows (a 36 MB CSV) stays far under 1 GB resident in every process."
    from mnist_fastai.data import write_csv
    rng = np.random.default_rng(0)
    (tmp_path/'d').mkdir()
    write_csv(tmp_path/'d/train.csv', rng.integers(0, 256, (20000, 28, 28), dtype=np.uint8), rng.integers(0, 10, 20000))
    code = ("import resource, subprocess, sys; subprocess.run([sys.executable, '-m', 'mnist_fastai.csv2png', '--data', sys.argv[1], "
            "'--dest', sys.argv[2]], check=True, capture_output=True); print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")
    r = run('-c', code, tmp_path/'d', tmp_path/'images', cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    peak_mb = int(r.stdout.strip()) / 1024
    assert peak_mb < 400, peak_mb

"Interrupted runs lose nothing, two writers do not collide, a full disk is reported, runs are reproducible."
import os, random, signal, subprocess, sys, time, threading
from pathlib import Path
import numpy as np
import pytest, torch
from PIL import Image
from conftest import run, assert_one_line_error, ROOT, EMPTY_TORCH_HOME
from mnist_fastai.data import make_sample, read_csv

def popen(*args, cwd):
    e = dict(os.environ, PYTHONPATH=str(ROOT), MPLBACKEND='Agg', TORCH_HOME=str(EMPTY_TORCH_HOME))
    return subprocess.Popen([sys.executable, *map(str, args)], cwd=cwd, env=e, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

def tree(dest):
    return {str(p.relative_to(dest)): p.read_bytes() for p in sorted(Path(dest).rglob('*')) if p.is_file() and not p.name.startswith('.csv2png')}

def wait_for(pred, proc, timeout=120):
    t = time.time()
    while not pred():
        assert proc.poll() is None, proc.communicate()
        assert time.time() - t < timeout
        time.sleep(0.02)

@pytest.fixture(scope='module')
def big(tmp_path_factory):
    "The whole built-in sample (5000 digits): enough that a conversion takes a moment."
    d = tmp_path_factory.mktemp('big'); make_sample(d/'data')
    assert run('-m', 'mnist_fastai.csv2png', '--dest', 'ref', cwd=d).returncode == 0
    return d

def test_csv2png_sigkill_then_rerun(big, tmp_path):
    x, y = read_csv(big/'data/train.csv')
    rng = random.Random(0)
    for attempt in range(3):
        dest = tmp_path/f'images{attempt}'
        p = popen('-m', 'mnist_fastai.csv2png', '--data', big/'data', '--dest', dest, cwd=tmp_path)
        wait_for(lambda: (dest/'train/0').is_dir() and any(os.scandir(dest/'train/0')), p)
        time.sleep(rng.uniform(0, 0.15))
        p.send_signal(signal.SIGKILL); p.wait()
        for f in (dest/'train').glob('*/[0-9]*.png'):       # whatever has its final name is whole and right
            i = int(f.stem) - 1
            assert int(f.parent.name) == y[i] and (np.array(Image.open(f)) == x[i]).all()
        r = run('-m', 'mnist_fastai.csv2png', '--data', big/'data', '--dest', dest, cwd=tmp_path)
        assert r.returncode == 0, r.stderr
        assert tree(dest) == tree(big/'ref')

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

def test_disk_full_is_one_line(big, tmp_path, monkeypatch, capsys):
    "The disk fills up after 299 images: the kernel's own ENOSPC (the 300th file's descriptor is pointed at /dev/full)."
    import builtins
    import mnist_fastai.csv2png as c2p
    real, n = builtins.open, [0]
    def open_(f, mode='r', *a, **k):
        fh = real(f, mode, *a, **k)
        if 'x' in mode and str(f).endswith('.tmp'):
            n[0] += 1
            if n[0] >= 300:
                full = os.open('/dev/full', os.O_WRONLY); os.dup2(full, fh.fileno()); os.close(full)
        return fh
    monkeypatch.setattr(builtins, 'open', open_)
    with pytest.raises(SystemExit) as e: c2p.main(data=str(big/'data'), dest=str(tmp_path/'images'), workers=1)   # the CLI's function, in-process
    monkeypatch.undo()
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith('error: ') and 'No space left on device' in err[0], err
    x, y = read_csv(big/'data/train.csv')
    files = list((tmp_path/'images').rglob('*.png'))
    assert len(files) == 299 and not list((tmp_path/'images').rglob('.*.tmp'))
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
    d = tiny
    p = popen('-m', 'mnist_fastai.train', '--epochs', '3', '--bs', '32', '--models', 'm', '--plots', 'p', cwd=d)
    wait_for(lambda: (d/'m/last.pth').exists(), p)
    time.sleep(random.Random(1).uniform(0.1, 0.8))
    p.send_signal(signal.SIGKILL); p.wait()
    assert not (d/'m/model.pkl').exists()
    torch.load(d/'m/last.pth', weights_only=False); torch.load(d/'m/best.pth')   # whole files, not half-written
    r = run('-m', 'mnist_fastai.train', '--epochs', '3', '--bs', '32', '--models', 'm', '--plots', 'p', '--resume', cwd=d)
    assert r.returncode == 0, r.stderr
    assert 'resuming from m/last.pth: stage 1, epoch' in r.stdout
    assert not (d/'m/last.pth').exists()                     # a finished run leaves nothing to resume
    cut = lambda f: [l.rsplit(',', 1)[0] for l in (d/f).read_text().splitlines()]   # all but the seconds column
    assert cut('p/training_log.csv') == cut('pref/training_log.csv')                 # the schedule went on, not restarted
    assert run('-m', 'mnist_fastai.predict', '--model', 'm/model.pkl', '--out', 'resumed.csv', cwd=d).returncode == 0
    assert (d/'resumed.csv').read_bytes() == (d/'ref.csv').read_bytes()

def test_resume_refuses_other_settings(tiny):
    d = tiny
    p = popen('-m', 'mnist_fastai.train', '--epochs', '3', '--bs', '32', '--models', 'm2', '--plots', 'p2', cwd=d)
    wait_for(lambda: (d/'m2/last.pth').exists(), p)
    p.send_signal(signal.SIGKILL); p.wait()
    assert_one_line_error(run('-m', 'mnist_fastai.train', '--epochs', '4', '--bs', '32', '--models', 'm2', '--plots', 'p2', '--resume', cwd=d),
                          'm2/last.pth: saved by a run with other settings')

# A SIGKILL at a chosen instant, not after a guessed delay: the process kills itself from inside `open` (just after
# the file it writes the submission to is opened) or from inside `os.replace` (the whole file written, not yet renamed).
KILL_AT = """import builtins, os, runpy, signal, sys
where, name = sys.argv[1], sys.argv[2]
real_open, real_replace = builtins.open, os.replace
def kill(): os.kill(os.getpid(), signal.SIGKILL)
def open_(f, mode='r', *a, **k):
    fh = real_open(f, mode, *a, **k)
    if where == 'open' and ('w' in mode or 'x' in mode) and name in os.path.basename(str(f)): kill()
    return fh
def replace_(a, b, **k):
    if where == 'rename' and os.path.basename(str(b)) == name: kill()
    return real_replace(a, b, **k)
builtins.open, os.replace = open_, replace_
sys.argv = ['predict'] + sys.argv[3:]
runpy.run_module('mnist_fastai.predict', run_name='__main__')
"""

def test_predict_sigkill(tiny):
    "Killed while writing the submission, or after writing it but before the rename: the old submission is untouched."
    d = tiny
    for where in ('open', 'rename'):
        (d/'k.csv').write_text('the previous submission\n')
        p = subprocess.run([sys.executable, '-c', KILL_AT, where, 'k.csv', '--model', 'mref/model.pkl', '--out', 'k.csv'], cwd=d,
                           env=dict(os.environ, PYTHONPATH=str(ROOT), MPLBACKEND='Agg', TORCH_HOME=str(EMPTY_TORCH_HOME)),
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

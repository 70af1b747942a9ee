"csv2png through its command line: lossless round trip, reruns, interrupted runs, --force and its errors."
import os, shutil
from pathlib import Path
import numpy as np
import pytest
from PIL import Image
from conftest import run, assert_one_line_error
from mnist_fastai.data import read_csv

def c2p(data, dest, *extra): return run('-m', 'mnist_fastai.csv2png', '--data', data, '--dest', dest, *extra)

def tree(dest):
    "{relative path: bytes} of every file under dest."
    return {str(p.relative_to(dest)): p.read_bytes() for p in sorted(Path(dest).rglob('*')) if p.is_file() and p.name != '.csv2png.lock'}

def test_roundtrip(sample, tmp_path):
    r = c2p(sample, tmp_path/'images')
    assert r.returncode == 0, r.stderr
    assert 'train: 300 images' in r.stdout and 'test: 100 images' in r.stdout
    x, y = read_csv(sample/'train.csv')
    xt, _ = read_csv(sample/'test.csv')
    files = sorted((tmp_path/'images/train').glob('*/*.png'))
    assert len(files) == 300
    for f in files:
        i = int(f.stem) - 1
        im = Image.open(f)
        assert im.mode == 'L' and im.size == (28, 28)
        assert int(f.parent.name) == y[i] and (np.array(im) == x[i]).all()
    tests = sorted((tmp_path/'images/test').glob('*.png'))
    assert [t.name for t in tests] == [f'{i:05d}.png' for i in range(1, 101)]
    assert all((np.array(Image.open(t)) == xt[i]).all() for i, t in enumerate(tests))

def test_from_the_competition_zip(sample, tmp_path):
    "Only digit-recognizer.zip, as Kaggle ships it: the same PNGs as from the CSVs, and the tree knows its source."
    import zipfile
    from mnist_fastai.csv2png import tree_source
    (tmp_path/'data').mkdir()
    with zipfile.ZipFile(tmp_path/'data/digit-recognizer.zip', 'w') as z:
        for n in ('train.csv', 'test.csv'): z.write(sample/n, n)
    r = c2p(tmp_path/'data', tmp_path/'zipped')
    assert r.returncode == 0, r.stderr
    assert c2p(sample, tmp_path/'plain').returncode == 0
    pngs = lambda d: {k: v for k, v in tree(d).items() if k.endswith('.png')}
    assert pngs(tmp_path/'zipped') == pngs(tmp_path/'plain') and len(pngs(tmp_path/'plain')) == 400
    assert tree_source(tmp_path/'zipped') == f"{tmp_path}/data/digit-recognizer.zip:test.csv"

def test_rerun_skips_and_repairs(sample, tmp_path):
    dest = tmp_path/'images'
    assert c2p(sample, dest).returncode == 0
    want = tree(dest)
    r = c2p(sample, dest)
    assert '0 written, 300 already correct' in r.stdout and '0 written, 100 already correct' in r.stdout
    # an interrupted run: one PNG missing, one truncated, a temp file left behind, a stray file from older data
    first = next(iter(sorted((dest/'train').glob('*/*.png'))))
    first.unlink()
    (dest/'test/00007.png').write_bytes(b'\x89PNG truncated')
    (dest/'test/.00008.png.123.tmp').write_bytes(b'half')
    (dest/'test/00101.png').write_bytes((dest/'test/00001.png').read_bytes())
    r = c2p(sample, dest)
    assert r.returncode == 0, r.stderr
    assert 'train: 300 images' in r.stdout and '1 written, 299 already correct' in r.stdout
    assert '1 written, 99 already correct, 2 stale removed' in r.stdout
    assert tree(dest) == want
    r = c2p(sample, dest, '--force')
    assert '300 written, 0 already correct' in r.stdout and tree(dest) == want

def test_first_run_builds_aside(sample, tmp_path, monkeypatch):
    """A first run builds each split in a staging folder and leaves none behind; a staging folder that a killed first
    run left (some PNGs whole, one cut short) is removed by the next run, which builds the split afresh; empty folders
    where the split goes do not stop a first run; files that are not ours are left alone."""
    ref = tmp_path/'ref'
    r = c2p(sample, ref)
    assert '300 written, 0 already correct, 0 stale removed' in r.stdout and '100 written, 0 already correct, 0 stale removed' in r.stdout
    assert sorted(os.listdir(ref)) == ['.csv2png.lock', 'test', 'train']
    dest = tmp_path/'images'
    stage = dest/'.train.4242.0.tmp'                  # as a first run killed in its training split leaves it
    shutil.copytree(ref/'train', stage)
    pngs = sorted(stage.glob('*/*.png'))
    for f in pngs[::2]: f.unlink()
    pngs[1].write_bytes(pngs[1].read_bytes()[:40])
    (dest/'test/3').mkdir(parents=True)               # empty folders where the test split goes
    mine = [dest/'.train.cache.npz.4242.1.tmp', dest/'notes']
    mine[0].write_bytes(b'not a staging folder'); mine[1].mkdir()
    r = c2p(sample, dest)
    assert r.returncode == 0, r.stderr
    assert '300 written, 0 already correct, 0 stale removed' in r.stdout and '100 written, 0 already correct' in r.stdout
    assert all(m.exists() for m in mine)
    assert tree(dest) == {**tree(ref), mine[0].name: b'not a staging folder'}
    assert sorted(os.listdir(dest)) == sorted(['.csv2png.lock', 'test', 'train'] + [m.name for m in mine])
    import mnist_fastai.csv2png as c
    monkeypatch.setattr(c, 'write_png', lambda *a, **k: pytest.fail('a first run wrote a PNG through the per-file atomic writer'))
    x, y = read_csv(sample/'train.csv')
    (tmp_path/'inproc/train/5').mkdir(parents=True)    # (in-process, one worker: the spy sees every write)
    assert c.convert(x, y, tmp_path/'inproc', 'train', n_workers=1, progress=False)['written'] == 300
    assert tree(tmp_path/'inproc') == {k: v for k, v in tree(ref).items() if k.startswith('train/') and k.endswith('.png')}

def test_only_test_csv(sample, tmp_path):
    (tmp_path/'d').mkdir(); shutil.copy(sample/'test.csv', tmp_path/'d')
    r = c2p(tmp_path/'d', tmp_path/'images')
    assert r.returncode == 0 and 'test: 100 images' in r.stdout and 'train' not in r.stdout
    assert not (tmp_path/'images/train').exists()

def test_errors_write_nothing(sample, tmp_path):
    (tmp_path/'empty').mkdir()
    assert_one_line_error(c2p(tmp_path/'empty', tmp_path/'images'), 'has neither train.csv nor test.csv')
    assert_one_line_error(c2p(tmp_path/'missing', tmp_path/'images'), 'missing: no such folder')
    bad = tmp_path/'bad'; bad.mkdir()
    shutil.copy(sample/'train.csv', bad)
    lines = (sample/'test.csv').read_text().split('\n')
    lines[50] = lines[50].replace(',0', ',300', 1)
    (bad/'test.csv').write_text('\n'.join(lines))
    assert_one_line_error(c2p(bad, tmp_path/'images'), 'test.csv line 51 (row 50)', '300 is outside 0..255')
    assert not (tmp_path/'images').exists()     # train.csv was fine, but nothing is written until both are valid

def test_unwritable_destination(sample, tmp_path):
    (tmp_path/'ro').write_text('a file where the images folder should be')
    r = c2p(sample, tmp_path/'ro')
    assert_one_line_error(r, f"{tmp_path/'ro'}: ")

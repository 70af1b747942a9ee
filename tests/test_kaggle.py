"The kaggle wrapper without the network: credentials, a stand-in kaggle CLI on PATH, safe extraction."
import json, os, stat, zipfile
from pathlib import Path
import pytest
from conftest import run, assert_one_line_error, ROOT

FAKE = '''#!/usr/bin/env python3
import sys, os, zipfile, pathlib
log = pathlib.Path(os.environ['FAKE_KAGGLE_LOG']); log.write_text(' '.join(sys.argv[1:]))
if sys.argv[1:3] == ['competitions', 'download']:
    dest = pathlib.Path(sys.argv[sys.argv.index('-p') + 1])
    with zipfile.ZipFile(dest/'digit-recognizer.zip', 'w') as z:
        z.writestr('train.csv', open(os.environ['FAKE_TRAIN']).read()); z.writestr('test.csv', open(os.environ['FAKE_TEST']).read())
print('fake kaggle: ok')
'''

@pytest.fixture
def env(tmp_path, sample):
    "A HOME with valid credentials and a fake `kaggle` first on PATH."
    home = tmp_path/'home'; (home/'.kaggle').mkdir(parents=True)
    cred = home/'.kaggle/kaggle.json'
    cred.write_text(json.dumps({'username': 'someone', 'key': 'TOPSECRETKEY'})); os.chmod(cred, 0o600)
    bin_ = tmp_path/'bin'; bin_.mkdir()
    (bin_/'kaggle').write_text(FAKE); os.chmod(bin_/'kaggle', 0o755)
    e = {k: v for k, v in os.environ.items() if not k.startswith('KAGGLE_')}
    e.update(HOME=str(home), PATH=f"{bin_}:{os.environ['PATH']}", FAKE_KAGGLE_LOG=str(tmp_path/'kaggle.log'),
             FAKE_TRAIN=str(sample/'train.csv'), FAKE_TEST=str(sample/'test.csv'))
    return e

def kag(env, *args, cwd):
    import subprocess, sys
    return subprocess.run([sys.executable, '-m', 'mnist_fastai.kaggle', *map(str, args)], cwd=cwd, capture_output=True, text=True,
                          env=dict(env, PYTHONPATH=str(ROOT)))

def test_no_credentials(env, tmp_path):
    os.remove(Path(env['HOME'])/'.kaggle/kaggle.json')
    r = kag(env, 'download', cwd=tmp_path)
    assert_one_line_error(r, 'no Kaggle credentials found', 'chmod 600 ~/.kaggle/kaggle.json')
    assert not (tmp_path/'kaggle.log').exists()            # the CLI was never called

def test_download_extracts(env, tmp_path, sample):
    r = kag(env, 'download', cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert (tmp_path/'kaggle.log').read_text() == 'competitions download -c digit-recognizer -p data'
    assert (tmp_path/'data/train.csv').read_bytes() == (sample/'train.csv').read_bytes()
    assert 'TOPSECRETKEY' not in r.stdout + r.stderr

def test_world_readable_credentials_warn(env, tmp_path):
    os.chmod(Path(env['HOME'])/'.kaggle/kaggle.json', 0o644)
    r = kag(env, 'download', cwd=tmp_path)
    assert r.returncode == 0 and 'is readable by other users; fix it with: chmod 600' in r.stdout
    assert 'TOPSECRETKEY' not in r.stdout + r.stderr

def test_submit_validates_first(env, tmp_path, sample):
    (tmp_path/'data').mkdir(); (tmp_path/'data/test.csv').write_bytes((sample/'test.csv').read_bytes())
    bad = tmp_path/'sub.csv'; bad.write_text('ImageId,Label\n1,3\n')
    assert_one_line_error(kag(env, 'submit', bad, cwd=tmp_path), '1 rows, but the test set has 100 images')
    assert not (tmp_path/'kaggle.log').exists()
    bad.write_text('ImageId,Label\n' + ''.join(f'{i},7\n' for i in range(1, 101)))
    r = kag(env, 'submit', bad, '--message', 'knn try', cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert (tmp_path/'kaggle.log').read_text() == f'competitions submit -c digit-recognizer -f {bad} -m knn try'

def _zip(path, make):
    with zipfile.ZipFile(path, 'w', zipfile.ZIP_DEFLATED) as z: make(z)
    return path

def test_crafted_zips_refused(tmp_path):
    from mnist_fastai.kaggle import safe_extract
    from mnist_fastai.data import DataError
    def link(z):
        i = zipfile.ZipInfo('train.csv'); i.external_attr = (stat.S_IFLNK | 0o777) << 16; z.writestr(i, '/etc/passwd')
    cases = {'..': (lambda z: z.writestr('a/../../x.csv', 'x'), 'leaves the destination'),
             'abs': (lambda z: z.writestr('/abs/x.csv', 'x'), 'leaves the destination'),
             'link': (link, 'symbolic link'),
             'bomb': (lambda z: z.writestr('t.csv', b'\0' * (30 << 20)), 'compression ratio'),
             'total': (lambda z: [z.writestr(f'{i}.csv', os.urandom(1 << 16)) for i in range(20)], 'more than 1 MiB')}
    for name, (make, msg) in cases.items():
        p = _zip(tmp_path/f'{name}.zip', make)
        with pytest.raises(DataError, match=msg): safe_extract(p, tmp_path/'out', max_total=1 << 20)
        assert not (tmp_path/'out').exists() and not (tmp_path/'x.csv').exists()

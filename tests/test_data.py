"The data layer end to end through its command line: every validation case, every accepted format, IDX and the sample."
import functools, gzip, hashlib, http.server, json, os, shlex, threading, zipfile
from pathlib import Path
import numpy as np
import pytest
from conftest import run, assert_one_line_error, ROOT
from mnist_fastai.data import PIXEL_COLS, read_csv, write_idx, read_idx

HEAD_TRAIN = ','.join(['label'] + PIXEL_COLS)
HEAD_TEST = ','.join(PIXEL_COLS)
ROW = ','.join(['7'] + ['0']*300 + ['128']*84 + ['255']*100 + ['0']*300)   # a label and 784 pixels

def write(tmp_path, name, text):
    p = tmp_path/name
    p.write_bytes(text if isinstance(text, bytes) else text.encode())
    return p

def check(p): return run('-m', 'mnist_fastai.data', 'check', p)

BAD = {  # case: (file text, what the one-line error must say)
    'empty':              ('', ['the file is empty']),
    'header only':        (HEAD_TRAIN + '\n', ['has a header but no rows']),
    'misnamed column':    (HEAD_TRAIN.replace('pixel5,', 'pixel_5,') + '\n' + ROW + '\n', ["line 1, column 7: found 'pixel_5', expected 'pixel5'"]),
    'missing column':     (HEAD_TRAIN.replace(',pixel783', '') + '\n' + ROW + '\n', ['line 1: 784 columns, expected 785']),
    'extra column':       (HEAD_TRAIN + ',pixel784\n' + ROW + ',0\n', ['line 1: 786 columns, expected 785']),
    'too many fields':    (HEAD_TRAIN + '\n' + ROW + '\n' + ROW + ',0\n', ['line 3 (row 2): 786 fields, expected 785']),
    'too few fields':     (HEAD_TRAIN + '\n' + ROW.rsplit(',', 1)[0] + '\n' + ROW + '\n', ['line 2 (row 1): 784 fields, expected 785']),
    'empty field':        (HEAD_TRAIN + '\n' + ROW.replace(',128,', ',,', 1) + '\n', ['line 2 (row 1), column pixel300: empty field']),
    'float field':        (HEAD_TRAIN + '\n' + ROW.replace(',128,', ',12.5,', 1) + '\n', ["column pixel300: '12.5' is not an integer"]),
    'letters':            (HEAD_TRAIN + '\n' + ROW.replace(',128,', ',abc,', 1) + '\n', ["column pixel300: 'abc' is not an integer"]),
    'negative':           (HEAD_TRAIN + '\n' + ROW.replace(',128,', ',-1,', 1) + '\n', ["column pixel300: -1 is outside 0..255"]),
    'pixel 256':          (HEAD_TRAIN + '\n' + ROW + '\n' + ROW.replace(',128,', ',256,', 1) + '\n', ['line 3 (row 2), column pixel300: 256 is outside 0..255']),
    'pixel 1000':         (HEAD_TRAIN + '\n' + ROW.replace(',128,', ',1000,', 1) + '\n', ['column pixel300: 1000 is outside 0..255']),
    'label 10':           (HEAD_TRAIN + '\n' + '10' + ROW[1:] + '\n', ['line 2 (row 1), column label: 10 is outside 0..9']),
    'blank line inside':  (HEAD_TRAIN + '\n' + ROW + '\n\n' + ROW + '\n', ['line 3 (row 2): blank line']),
    'truncated last row': (HEAD_TRAIN + '\n' + ROW + '\n' + ROW[:900], ['line 3 (row 2)', 'truncated last row']),
    'binary garbage':     (bytes(range(256)) * 4, ['line 1, column 1: byte 0x00 is not text']),
}

@pytest.mark.parametrize('case', list(BAD))
def test_bad_csv_one_line_error(tmp_path, case):
    text, needles = BAD[case]
    p = write(tmp_path, 'train.csv', text)
    assert_one_line_error(check(p), 'train.csv', *needles)

def test_train_without_label_column(tmp_path):
    (tmp_path/'data').mkdir()
    write(tmp_path/'data', 'train.csv', HEAD_TEST + '\n' + ROW.split(',', 1)[1] + '\n')
    p = run('-m', 'mnist_fastai.csv2png', '--data', tmp_path/'data', '--dest', tmp_path/'images')
    assert_one_line_error(p, 'train.csv line 1', "needs 'label'")
    assert not (tmp_path/'images').exists()

def test_test_file_with_label_column(tmp_path):
    (tmp_path/'data').mkdir()
    write(tmp_path/'data', 'test.csv', HEAD_TRAIN + '\n' + ROW + '\n')
    assert_one_line_error(run('-m', 'mnist_fastai.csv2png', '--data', tmp_path/'data', '--dest', tmp_path/'images'),
                          'test.csv line 1', "no 'label' column")

GOOD = HEAD_TRAIN + '\n' + ROW + '\n' + ROW.replace('7,', '3,', 1) + '\n'

@pytest.mark.parametrize('variant', ['plain', 'crlf', 'bom', 'trailing blank lines', 'no final newline', 'gzip', 'zip'])
def test_accepted_formats(tmp_path, variant):
    text = {'crlf': GOOD.replace('\n', '\r\n'), 'bom': '\ufeff' + GOOD, 'trailing blank lines': GOOD + '\n\n\r\n',
            'no final newline': GOOD.rstrip('\n')}.get(variant, GOOD)
    if variant == 'gzip': p = write(tmp_path, 'train.csv.gz', gzip.compress(text.encode()))
    elif variant == 'zip':
        with zipfile.ZipFile(tmp_path/'digit-recognizer.zip', 'w') as z: z.writestr('train.csv', text)
        p = f'{tmp_path}/digit-recognizer.zip:train.csv'
    else: p = write(tmp_path, 'train.csv', text)
    r = check(p)
    assert r.returncode == 0, r.stderr
    assert 'ok, train file with 2 images' in r.stdout
    x, y = read_csv(p)
    assert y.tolist() == [7, 3] and x.dtype == np.uint8 and x.shape == (2, 28, 28)
    assert x[0].reshape(-1).tolist() == [int(v) for v in ROW.split(',')[1:]]

def test_corrupt_gzip_and_zip(tmp_path):
    assert_one_line_error(check(write(tmp_path, 'train.csv.gz', gzip.compress(GOOD.encode())[:50])), 'not a valid gzip file')
    write(tmp_path, 'digit-recognizer.zip', b'PK\x03\x04 not really a zip')
    assert_one_line_error(check(f'{tmp_path}/digit-recognizer.zip:train.csv'), 'not a valid zip file')

def test_missing_file(tmp_path):
    assert_one_line_error(check(tmp_path/'nope.csv'), 'nope.csv: no such file')

def test_idx_roundtrip_and_errors(tmp_path):
    rng = np.random.default_rng(1)
    imgs, labels = rng.integers(0, 256, (6, 28, 28), dtype=np.uint8), rng.integers(0, 10, 6).astype(np.uint8)
    write_idx(tmp_path/'imgs-idx3-ubyte', imgs)
    (tmp_path/'lbls-idx1-ubyte.gz').write_bytes(gzip.compress((write_idx(tmp_path/'l', labels)).read_bytes()))
    r = run('-m', 'mnist_fastai.data', 'idx2csv', tmp_path/'imgs-idx3-ubyte', '--labels', tmp_path/'lbls-idx1-ubyte.gz', '--out', tmp_path/'train.csv')
    assert r.returncode == 0, r.stderr
    x, y = read_csv(tmp_path/'train.csv')
    assert (x == imgs).all() and (y == labels).all()
    r = run('-m', 'mnist_fastai.data', 'idx2csv', tmp_path/'imgs-idx3-ubyte', '--out', tmp_path/'test.csv')
    assert r.returncode == 0 and read_csv(tmp_path/'test.csv')[1] is None
    bad_magic = write(tmp_path, 'bad-idx3-ubyte', b'\x01\x02\x08\x03' + bytes(20))
    assert_one_line_error(run('-m', 'mnist_fastai.data', 'idx2csv', bad_magic, '--out', tmp_path/'o.csv'), 'bad magic number')
    short = write(tmp_path, 'short-idx3-ubyte', (tmp_path/'imgs-idx3-ubyte').read_bytes()[:-10])
    assert_one_line_error(run('-m', 'mnist_fastai.data', 'idx2csv', short, '--out', tmp_path/'o.csv'), 'but 4694 bytes follow')
    few = write_idx(tmp_path/'few-idx1-ubyte', labels[:3])
    assert_one_line_error(run('-m', 'mnist_fastai.data', 'idx2csv', tmp_path/'imgs-idx3-ubyte', '--labels', few, '--out', tmp_path/'o.csv'),
                          'expected 6 labels')
    assert not (tmp_path/'o.csv').exists()

def test_sample_command(tmp_path):
    r = run('-m', 'mnist_fastai.data', 'sample', '--dest', tmp_path/'d')
    assert r.returncode == 0, r.stderr
    x, y = read_csv(tmp_path/'d/train.csv')
    xt, yt = read_csv(tmp_path/'d/test.csv')
    assert (len(x), len(xt), yt) == (4000, 1000, None)
    lab = np.loadtxt(tmp_path/'d/test_labels.csv', delimiter=',', skiprows=1, dtype=int)
    assert lab[:, 0].tolist() == list(range(1, 1001))
    assert np.bincount(lab[:, 1]).tolist() == [100]*10 and np.bincount(y).tolist() == [400]*10
    assert x.max() == 255 and x.mean() > 20    # real digits, not blanks

def test_answers_need_labels(tmp_path):
    write_idx(tmp_path/'imgs-idx3-ubyte', np.zeros((2, 28, 28), np.uint8))
    assert_one_line_error(run('-m', 'mnist_fastai.data', 'idx2csv', tmp_path/'imgs-idx3-ubyte', '--out', tmp_path/'t.csv',
                              '--answers', tmp_path/'a.csv'), '--answers needs --labels')
    assert not (tmp_path/'t.csv').exists() and not (tmp_path/'a.csv').exists()

# torchvision's MNIST downloader is the real client here: a `sitecustomize` in its process points the class's mirror
# list at an HTTP server on 127.0.0.1 serving IDX files made from the built-in sample (and gives their MD5s), because
# MNIST's own mirrors cannot be reached from a test. The README's commands then run exactly as written.
SITE = """import json, os
from torchvision.datasets import MNIST
MNIST.mirrors = [os.environ['MNIST_TEST_MIRROR']]
MNIST.resources = json.loads(os.environ['MNIST_TEST_RESOURCES'])
"""

def readme_commands(title):
    "The `python ...` lines of the first sh block after the paragraph that starts with `title` in README.md."
    text = (ROOT/'README.md').read_text()
    block = text[text.index(title):].split('```sh\n', 1)[1].split('```', 1)[0]
    return [shlex.split(l) for l in block.splitlines() if l.startswith('python ')]

def test_full_size_data_as_the_readme_says(tmp_path, sample):
    srv_dir, site = tmp_path/'mirror', tmp_path/'site'
    srv_dir.mkdir(); site.mkdir()
    (x, y), (xt, _) = read_csv(sample/'train.csv'), read_csv(sample/'test.csv')
    yt = np.loadtxt(sample/'test_labels.csv', delimiter=',', skiprows=1, dtype=np.uint8)[:, 1]
    res = []
    for name, a in [('train-images-idx3-ubyte', x), ('train-labels-idx1-ubyte', y), ('t10k-images-idx3-ubyte', xt), ('t10k-labels-idx1-ubyte', yt)]:
        gz = srv_dir/f'{name}.gz'
        gz.write_bytes(gzip.compress(write_idx(tmp_path/name, a).read_bytes()))
        res.append([gz.name, hashlib.md5(gz.read_bytes()).hexdigest()])
    (site/'sitecustomize.py').write_text(SITE)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(srv_dir))
    handler.log_message = lambda *a: None
    with http.server.ThreadingHTTPServer(('127.0.0.1', 0), handler) as srv:
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        env = dict(MNIST_TEST_MIRROR=f'http://127.0.0.1:{srv.server_address[1]}/', MNIST_TEST_RESOURCES=json.dumps(res),
                   PYTHONPATH=f'{site}{os.pathsep}{ROOT}', no_proxy='127.0.0.1,localhost', NO_PROXY='127.0.0.1,localhost')
        cmds = readme_commands('**Full-size data without a Kaggle account.**')
        assert [c[:3] for c in cmds[:3]] == [['python', '-c', cmds[0][2]], ['python', '-m', 'mnist_fastai.data'], ['python', '-m', 'mnist_fastai.data']]
        for c in cmds[:3]:
            r = run(*c[1:], cwd=tmp_path, env=env)
            assert r.returncode == 0, (c, r.stderr[-2000:])
        srv.shutdown()
    x2, y2 = read_csv(tmp_path/'full/train.csv')
    xt2, none = read_csv(tmp_path/'full/test.csv')
    assert (x2 == x).all() and (y2 == y).all() and (xt2 == xt).all() and none is None
    assert (tmp_path/'full/test_labels.csv').read_bytes() == (sample/'test_labels.csv').read_bytes()
    # the README's main job on that folder scores against the answers beside its test.csv
    main = next(c for c in cmds if c[:3] == ['python', '-m', 'mnist_fastai.pipeline'])
    r = run(*main[1:], '--epochs', '1', cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    assert 'local accuracy' in r.stdout and (tmp_path/'submissions/full.csv').exists()

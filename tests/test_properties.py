"Property-based tests of the CSV and IDX readers: valid files round-trip; mutated files are read right or refused in one line."
import gzip, re
import numpy as np
from hypothesis import given, settings, strategies as st, HealthCheck, event
from mnist_fastai.data import DataError, parse_csv, PIXEL_COLS, write_idx, read_idx
import tempfile
from pathlib import Path

def to_csv(x, y):
    head = ','.join((['label'] if y is not None else []) + PIXEL_COLS)
    rows = [(f'{y[i]},' if y is not None else '') + ','.join(map(str, r)) for i, r in enumerate(x.reshape(len(x), -1).tolist())]
    return (head + '\n' + '\n'.join(rows) + '\n').encode()

def reference(data: bytes):
    "An independent, slow reading of the same rules: (x, y) or None if the file must be refused."
    if data.startswith(b'\xef\xbb\xbf'): data = data[3:]
    try: text = data.decode('ascii')
    except UnicodeDecodeError: return None
    if any(ord(c) < 32 and c not in '\t\r\n' or ord(c) == 127 for c in text): return None
    lines = text.replace('\r\n', '\n').replace('\r', '\n').rstrip('\n \t').split('\n')
    if not lines or not lines[0].strip(): return None
    cols = [c.strip().strip('"') for c in lines[0].strip().split(',')]
    train = cols[0] == 'label'
    if cols != (['label'] if train else []) + PIXEL_COLS or len(lines) < 2: return None
    vals = []
    for line in lines[1:]:
        f = line.split(',')
        if len(f) != len(cols) or not all(re.fullmatch(r'\d+', v) for v in f): return None
        v = [int(o) for o in f]
        if max(v[1:] if train else v) > 255 or (train and v[0] > 9): return None
        vals.append(v)
    a = np.array(vals)
    return (a[:, -784:].reshape(-1, 28, 28), a[:, 0] if train else None)

digits = st.integers(1, 4).flatmap(lambda n: st.tuples(
    st.lists(st.integers(0, 255), min_size=784*n, max_size=784*n).map(lambda v: np.array(v, np.uint8).reshape(n, 28, 28)),
    st.one_of(st.none(), st.lists(st.integers(0, 9), min_size=n, max_size=n).map(lambda v: np.array(v, np.uint8)))))

@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(digits, st.sampled_from(['\n', '\r\n']), st.booleans(), st.booleans())
def test_valid_files_round_trip(xy, eol, bom, final_newline):
    x, y = xy
    data = to_csv(x, y).replace(b'\n', eol.encode())
    if not final_newline: data = data.rstrip(b'\r\n')
    if bom: data = b'\xef\xbb\xbf' + data
    x2, y2 = parse_csv(data, 'f.csv')
    assert (x2 == x).all() and x2.dtype == np.uint8
    assert (y2 is None) == (y is None) and (y is None or (y2 == y).all())

mutation = st.tuples(st.sampled_from(['flip', 'insert', 'delete', 'truncate', 'dup', 'digit']), st.floats(0, 1), st.binary(min_size=1, max_size=3))

def mutate(data: bytes, how, where, junk):
    i = int(where * (len(data) - 1))
    if how == 'flip': return data[:i] + junk[:1] + data[i+1:]
    if how == 'insert': return data[:i] + junk + data[i:]
    if how == 'delete': return data[:i] + data[i+len(junk):]
    if how == 'truncate': return data[:i]
    if how == 'digit':                      # another digit in place of a digit: often still a valid file
        j = next((k for k in range(i, len(data)) if 48 <= data[k] <= 57), None)
        return data if j is None else data[:j] + bytes([48 + junk[0] % 10]) + data[j+1:]
    return data[:i] + data[i:i+40] + data[i:]

@settings(max_examples=300, deadline=2000, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(digits, st.lists(mutation, min_size=1, max_size=3))
def test_mutated_files_are_read_right_or_refused(xy, muts):
    data = to_csv(*xy)
    for m in muts: data = mutate(data, *m)
    want = reference(data)
    try: got = parse_csv(data, 'f.csv')
    except DataError as e:
        msg = str(e)
        event('refused'); assert want is None, f'refused a valid file: {msg}'
        assert msg.startswith('f.csv') and '\n' not in msg
        return
    event('accepted'); assert want is not None, 'accepted a file the rules refuse'
    assert (got[0] == want[0]).all() and ((got[1] is None and want[1] is None) or (got[1] == want[1]).all())

@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(1, 5), min_size=1, max_size=3), st.randoms(use_true_random=False), st.booleans())
def test_idx_round_trip(shape, rnd, gz):
    a = np.frombuffer(rnd.randbytes(int(np.prod(shape))), np.uint8).reshape(shape)
    with tempfile.TemporaryDirectory() as d:
        p = write_idx(Path(d)/'a-idx', a)
        if gz: p.write_bytes(gzip.compress(p.read_bytes()))
        assert (read_idx(p) == a).all()

@settings(max_examples=200, deadline=2000)
@given(st.lists(st.integers(1, 4), min_size=1, max_size=3), mutation)
def test_mutated_idx_read_right_or_refused(shape, m):
    a = np.arange(int(np.prod(shape)), dtype=np.uint8).reshape(shape)
    with tempfile.TemporaryDirectory() as d:
        p = write_idx(Path(d)/'a-idx', a)
        data = mutate(p.read_bytes(), *m); p.write_bytes(data)
        try: got = read_idx(p)
        except DataError as e: assert str(e).startswith(str(p)) and '\n' not in str(e); return
        nd = data[3]; dims = tuple(int.from_bytes(data[4+4*i:8+4*i], 'big') for i in range(nd))
        assert got.shape == dims and got.tobytes() == data[4+4*nd:]

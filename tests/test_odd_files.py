"""Odd files, generated: what spreadsheets, editors and shell pipelines make of a digit CSV or a submission.

A CSV is either read exactly as pandas reads it, or refused with one line naming the file (and, for a problem in
the rows, the line and the column); never a traceback. Submissions follow Kaggle's rules.
"""
import io, re
import numpy as np
import pandas as pd
from hypothesis import given, settings, strategies as st, HealthCheck, event
from mnist_fastai.data import DataError, parse_csv, PIXEL_COLS
from mnist_fastai.submission import check_submission, read_labels

SETTINGS = settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

# ---- the digit CSVs ----
# Each field edit is (name, benign, function of the value's text): benign edits keep the value pandas reads.
FIELD_EDITS = {
    'zeros':   (True,  lambda v, k: '0' * (k % 4 + 1) + v),
    'plus':    (True,  lambda v, k: '+' + v),
    'quote':   (True,  lambda v, k: f'"{v}"'),
    'spaces':  (True,  lambda v, k: ' ' * (k % 3) + v + ' ' * (k % 2 + 1)),
    'minus0':  (True,  lambda v, k: '-0' if v == '0' else '-' + v),   # -0 is 0; -5 is out of range
    'decimal': (False, lambda v, k: v + ('.0' if k % 2 else '.5')),
    'exp':     (False, lambda v, k: v + 'e0'),
    'empty':   (False, lambda v, k: ''),
    'text':    (False, lambda v, k: ['x', 'NaN', 'N/A', '1_0', '0x1', '١'][k % 6]),
    'big':     (False, lambda v, k: str(256 + k)),
    'inner':   (False, lambda v, k: f'"{v}""{v}"'),
    'comma':   (False, lambda v, k: f'"{v},{v}"'),
}

FILE_EDITS = ['crlf', 'cr', 'bom', 'trailing_blank', 'no_final_newline', 'quote_all', 'semicolon', 'tab', 'utf16',
              'latin1', 'header_again', 'blank_middle', 'trailing_comma', 'truncate', 'nul']
BENIGN_FILE = {'crlf', 'cr', 'bom', 'trailing_blank', 'no_final_newline', 'quote_all'}

def _digits(n, seed, train):
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, (n, 784), dtype=np.uint8)
    x[:, rng.random(784) < 0.6] = 0                       # mostly background, as real digits are
    return x, (rng.integers(0, 10, n).astype(np.uint8) if train else None)

digits = st.builds(_digits, st.integers(1, 3), st.integers(0, 2**32 - 1), st.booleans())   # small to shrink

field_edit = st.tuples(st.sampled_from(sorted(FIELD_EDITS)), st.integers(0, 10**6), st.integers(0, 10**6))

def build(x, y, fedits, fileedits):
    "The text of a CSV for `(x, y)` after the edits, and whether every edit was one that keeps the values."
    head = (['label'] if y is not None else []) + PIXEL_COLS
    rows = [([str(y[i])] if y is not None else []) + [str(v) for v in r] for i, r in enumerate(x.tolist())]
    benign = True
    for name, r, c in fedits:
        ok, f = FIELD_EDITS[name]
        r, c = r % len(rows), c % len(head)
        v = rows[r][c]
        if (name == 'minus0' and v != '0') or not v.isdigit(): ok = False   # a second edit of one field: anything goes
        rows[r][c] = f(v, r + c)
        benign &= ok
    if 'quote_all' in fileedits:
        head = [f'"{h}"' for h in head]
        rows = [[v if v.startswith('"') else f'"{v}"' for v in row] for row in rows]
    lines = [','.join(head)] + [','.join(row) for row in rows]
    if 'header_again' in fileedits: lines.insert(1 + len(rows) // 2, lines[0])
    if 'blank_middle' in fileedits and len(lines) > 2: lines.insert(2, '')
    if 'trailing_comma' in fileedits: lines = [l + ',' for l in lines]
    text = '\n'.join(lines) + '\n'
    if 'semicolon' in fileedits: text = text.replace(',', ';')
    if 'tab' in fileedits: text = text.replace(',', '\t')
    if 'trailing_blank' in fileedits: text += '\n\n'
    if 'no_final_newline' in fileedits: text = text.rstrip('\n')
    if 'crlf' in fileedits: text = text.replace('\n', '\r\n')
    elif 'cr' in fileedits: text = text.replace('\n', '\r')
    if 'truncate' in fileedits: text = text[:len(text) * 3 // 4]
    if 'nul' in fileedits: text = text[:len(text) // 2] + '\0' + text[len(text) // 2:]
    if 'utf16' in fileedits: data = text.encode('utf-16')
    elif 'latin1' in fileedits: data = text.replace('0', '\xe9', 1).encode('latin-1', 'replace')
    else: data = text.encode()
    if 'bom' in fileedits and 'utf16' not in fileedits: data = b'\xef\xbb\xbf' + data
    return data, benign and set(fileedits) <= BENIGN_FILE

def pandas_reads(data):
    "What pandas' `read_csv` makes of the bytes, with its defaults: a DataFrame, or None if it raises."
    try: return pd.read_csv(io.BytesIO(data))
    except Exception: return None

@SETTINGS
@given(digits, st.lists(field_edit, max_size=4), st.lists(st.sampled_from(FILE_EDITS), max_size=3, unique=True))
def test_odd_csvs_read_as_pandas_or_refused(xy, fedits, fileedits):
    x, y = xy
    data, benign = build(x, y, fedits, fileedits)
    try: got = parse_csv(data, 'f.csv')
    except DataError as e:
        msg = str(e)
        event('refused')
        assert not benign, f'refused a file whose values pandas reads unchanged: {msg}'
        assert msg.startswith('f.csv') and '\n' not in msg, msg
        file_level = ('the file is empty', 'UTF-16', 'has a header but no rows', 'pandas reads')
        assert re.match(r'f\.csv line \d+', msg) or any(s in msg for s in file_level), msg
        return
    event('accepted')
    df = pandas_reads(data)
    assert df is not None, 'accepted a file pandas cannot read'
    want = np.column_stack([y, x]) if y is not None else x
    assert df.shape == want.shape, (df.shape, want.shape)
    assert (df.to_numpy() == want).all() and df.dtypes.map(lambda d: d.kind in 'iu').all(), 'pandas reads other values'
    gx, gy = got
    assert (gx.reshape(len(gx), -1) == df.to_numpy()[:, -784:]).all()
    assert (gy is None) == (y is None) and (gy is None or (gy == df.to_numpy()[:, 0]).all())

def test_benign_edits_are_read():
    "The edits a spreadsheet makes without changing a value are all accepted, each alone and together."
    x = np.arange(2 * 784).reshape(2, 784) % 256
    x[:, 10] = 0                                          # for '-0' (column 11: pixel10)
    y = np.array([3, 0])
    for edits in [[(n, 5, 300 if n != 'minus0' else 11)] for n, (ok, _) in FIELD_EDITS.items() if ok] + [[(n, 1, 3*k + i) for k in range(5) for i, n in enumerate(('zeros', 'quote', 'spaces'))]]:
        for fe in [[], ['crlf', 'bom'], ['quote_all'], ['cr', 'trailing_blank']]:
            data, benign = build(x.astype(np.uint8), y, edits, fe)
            assert benign
            gx, gy = parse_csv(data, 'f.csv')
            assert (gx.reshape(2, -1) == x).all() and (gy == y).all(), (edits, fe)

def test_refusals_name_the_place():
    x, y = np.zeros((2, 784), np.uint8), np.array([1, 2], np.uint8)
    cases = {('decimal', 1, 5): 'f.csv line 3 (row 2), column pixel4: ',
             ('big', 0, 0): 'f.csv line 2 (row 1), column label: 256 is outside 0..9',
             ('empty', 0, 784): 'f.csv line 2 (row 1), column pixel783: empty field',
             ('inner', 1, 2): 'f.csv line 3 (row 2), column pixel1: '}
    for edit, want in cases.items():
        try: parse_csv(build(x, y, [edit], [])[0], 'f.csv'); raise AssertionError(f'{edit} accepted')
        except DataError as e: assert str(e).startswith(want), (edit, str(e))
    for fe, want in {'semicolon': "separated by ';'", 'tab': "separated by '\\t'", 'utf16': 'UTF-16',
                     'latin1': 'byte 0xe9', 'header_again': 'the header again', 'nul': 'byte 0x00 is not text'}.items():
        try: parse_csv(build(x, y, [], [fe])[0], 'f.csv'); raise AssertionError(f'{fe} accepted')
        except DataError as e: assert want in str(e) and '\n' not in str(e), (fe, str(e))

# ---- submissions ----
def kaggle_accepts(text, n):
    "Kaggle's rules, as a reference: header ImageId,Label; each label one digit; each ImageId 1..n exactly once."
    lines = text.replace('\r\n', '\n').rstrip('\n').split('\n')
    if lines[0] != 'ImageId,Label' or len(lines) - 1 != n: return False
    ids = []
    for l in lines[1:]:
        f = l.split(',')
        if len(f) != 2 or not f[0].isdigit() or not f[0].isascii() or f[0].startswith('0'): return False
        if len(f[1]) != 1 or f[1] not in '0123456789': return False
        ids.append(int(f[0]))
    return sorted(ids) == list(range(1, n + 1))

SUB_EDITS = {
    'two_digits': lambda r, k: (r[0], r[1] + str(k % 10)),
    'lead_zero':  lambda r, k: (r[0], '0' + r[1]),
    'space':      lambda r, k: (r[0], ' ' + r[1]),
    'float':      lambda r, k: (r[0], r[1] + '.0'),
    'minus':      lambda r, k: (r[0], '-' + r[1]),
    'empty':      lambda r, k: (r[0], ''),
    'id_zero':    lambda r, k: ('0' + r[0], r[1]),
    'id_dup':     lambda r, k: ('1', r[1]),
    'id_big':     lambda r, k: (str(int(r[0]) + 1000), r[1]),
    'extra':      lambda r, k: (r[0], r[1] + ',x'),
}

@SETTINGS
@given(st.lists(st.integers(0, 9), min_size=1, max_size=12), st.lists(st.tuples(st.sampled_from(sorted(SUB_EDITS)), st.integers(0, 99)), max_size=2),
       st.booleans(), st.booleans(), st.sampled_from(['ImageId,Label', 'imageid,label', 'ImageId,Label,', 'Id,Label', '"ImageId","Label"']),
       st.randoms(use_true_random=False))
def test_submissions_follow_kaggles_rules(labels, edits, crlf, shuffle, header, rnd):
    rows = [(str(i), str(l)) for i, l in enumerate(labels, 1)]
    for name, k in edits:
        j = k % len(rows); rows[j] = SUB_EDITS[name](rows[j], k)
    if shuffle: rnd.shuffle(rows)
    text = header + '\n' + ''.join(f'{a},{b}\n' for a, b in rows)
    if crlf: text = text.replace('\n', '\r\n')
    import tempfile, pathlib
    with tempfile.TemporaryDirectory() as d:
        p = pathlib.Path(d)/'sub.csv'; p.write_text(text, newline='')
        ok = kaggle_accepts(text, len(labels))
        try: n = check_submission(p, n=len(labels))
        except DataError as e:
            event('refused'); assert not ok, f'refused a valid submission: {e}'
            assert str(e).startswith(str(p)) and '\n' not in str(e)
            return
        event('accepted'); assert ok, f'accepted a submission Kaggle refuses:\n{text}'
        assert n == len(labels)
        got = read_labels(p)                      # in ImageId order, whatever the row order
        want = dict((int(a), int(b)) for a, b in rows)
        assert got.tolist() == [want[i] for i in range(1, len(labels) + 1)]

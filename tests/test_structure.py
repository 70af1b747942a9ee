"The house rules that keep modules in their rooms: light commands stay light, one atomic writer, one quiet import."
import ast, json, re, subprocess, sys, tracemalloc
from pathlib import Path
import numpy as np
from conftest import run, ROOT
from mnist_fastai.data import make_sample, write_csv, parse_csv

PKG = ROOT/'mnist_fastai'

# Runs a command's module as `python -m` does, and reports at exit which heavy packages the command imported.
HEAVY = """import atexit, runpy, sys
atexit.register(lambda: print('HEAVY', sorted(m for m in ('torch', 'fastai', 'torchvision') if m in sys.modules)))
sys.argv = [sys.argv[1]] + sys.argv[2:]
runpy.run_module(sys.argv[0], run_name='__main__')
"""

def test_light_commands_import_neither_torch_nor_fastai(tmp_path):
    "Checking or submitting a CSV, the leaderboard and the baselines never load torch or fastai."
    make_sample(tmp_path/'data', n_test=100, n_train=300)
    sub = tmp_path/'sub.csv'; sub.write_text('ImageId,Label\n' + ''.join(f'{i},{i % 10}\n' for i in range(1, 101)))
    cmds = [['mnist_fastai.predict', '--check', sub], ['mnist_fastai.predict', '--leaderboard'],
            ['mnist_fastai.submission', 'score', sub], ['mnist_fastai.submission', 'leaderboard'],
            ['mnist_fastai.baseline', '--method', 'majority'],
            ['mnist_fastai.kaggle', 'submit', 'nope.csv'],               # refused by the check, before the kaggle CLI runs
            ['mnist_fastai.data', 'check', 'data/test.csv']]
    for cmd in cmds:
        r = run('-c', HEAVY, *cmd, cwd=tmp_path)
        assert r.stdout.strip().splitlines()[-1] == 'HEAVY []', (cmd, r.stdout, r.stderr)
    r = run('-c', HEAVY, 'mnist_fastai.train', '--help', cwd=tmp_path)     # the probe does see a heavy command
    assert "HEAVY ['fastai', 'torch', 'torchvision']" in r.stdout, r.stdout

def test_one_atomic_writer():
    "Files, and csv2png's staged split folders, are renamed into place in one function only (`core.atomic_path`); every other writer goes through it."
    found = set()
    for f in sorted(PKG.glob('*.py')):
        for fn in ast.walk(ast.parse(f.read_text())):
            if not isinstance(fn, ast.FunctionDef): continue
            for node in ast.walk(fn):
                if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in ('replace', 'rename') \
                   and isinstance(node.func.value, ast.Name) and node.func.value.id == 'os':
                    found.add((f.name, fn.name))
    assert found == {('core.py', 'atomic_path'), ('data.py', 'set_aside_sample')}, found   # the second moves files, writes none
    assert 'mkstemp' not in ''.join(f.read_text() for f in PKG.glob('*.py'))

def test_exported_functions_are_small():
    "No function or method in the package has a body (its signature and documented parameters aside) over 40 lines."
    long = [(f.name, node.name, node.end_lineno - node.body[0].lineno + 1) for f in sorted(PKG.glob('*.py'))
            for node in ast.walk(ast.parse(f.read_text())) if isinstance(node, ast.FunctionDef)
            and node.end_lineno - node.body[0].lineno + 1 > 40]
    assert not long, long

def test_fastai_import_warning_quiet_in_every_module():
    "The FutureWarning fastai's import raises under torch 2.14 is silenced by the package itself, for any of its modules."
    for mod in ('train', 'predict', 'fastdl', 'dataloaders', 'bench', 'pipeline'):
        r = subprocess.run([sys.executable, '-W', 'default', '-c', f'import mnist_fastai.{mod}, mnist_fastai.train'],
                           capture_output=True, text=True, cwd=ROOT)
        assert r.returncode == 0, r.stderr
        assert 'torch.jit.script' not in r.stderr, (mod, r.stderr)

def test_parse_csv_memory_does_not_grow_with_the_file(tmp_path):
    "Beyond its result, parsing needs one block's temporaries (about 40 MB), whatever the file's size; not whole-file copies."
    rng, extra = np.random.default_rng(0), []
    for n in (3000, 12000):                                   # 8 MB and 32 MB of CSV
        write_csv(tmp_path/'t.csv', rng.integers(0, 256, (n, 28, 28), dtype=np.uint8), rng.integers(0, 10, n))
        data = (tmp_path/'t.csv').read_bytes()
        tracemalloc.start()
        x, y = parse_csv(data, 't.csv')
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert x.shape == (n, 28, 28)
        extra.append((peak - n * 785) / 2**20)                # beyond the parsed rows
    assert extra[1] < 48 and extra[1] - extra[0] < 4, extra

# ---- one README, and figures that agree with BENCHMARKS.md ----

def _is_command(fn:ast.FunctionDef, tree) -> bool:
    "Whether `fn` is a command: decorated with `call_parse`, or handed to it (`main = call_parse(fn)`)."
    handed = {a.id for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, 'id', '') == 'call_parse'
              for a in n.args if isinstance(a, ast.Name)}
    return fn.name in handed or any(getattr(d, 'id', '') == 'call_parse' for d in fn.decorator_list)

def test_few_parameters_except_commands():
    "No function takes more than 10 parameters, except a command, whose parameters are its flags (docments, not a list)."
    many = []
    for f in sorted(PKG.glob('*.py')):
        tree = ast.parse(f.read_text())
        for fn in ast.walk(tree):
            if not isinstance(fn, ast.FunctionDef) or _is_command(fn, tree): continue
            a = fn.args
            n = len(a.posonlyargs + a.args + a.kwonlyargs) + bool(a.vararg) + bool(a.kwarg) - (a.args[:1] != [] and a.args[0].arg == 'self')
            if n > 10: many.append((f.name, fn.name, n))
    assert not many, many

def test_commands_take_help_from_docments():
    "Every flag of every command has a help line: its parameter's docment (`Param` has no help text to write twice)."
    from mnist_fastai.cli import make_parser
    import mnist_fastai.baseline, mnist_fastai.bench, mnist_fastai.csv2png, mnist_fastai.data, mnist_fastai.kaggle
    import mnist_fastai.pipeline, mnist_fastai.predict, mnist_fastai.submission, mnist_fastai.train
    for m in (mnist_fastai.baseline, mnist_fastai.bench, mnist_fastai.csv2png, mnist_fastai.data, mnist_fastai.kaggle,
              mnist_fastai.pipeline, mnist_fastai.predict, mnist_fastai.submission, mnist_fastai.train):
        p = make_parser(m.main)
        empty = [a.dest for a in p._actions if a.dest != 'help' and not (a.help or '').strip()]
        assert not empty, (m.__name__, empty)

def test_readme_recipes_are_the_code():
    "The recipes the README shows (index.ipynb's cell output) are `RECIPES` as the code describes them."
    from mnist_fastai.recipe import RECIPES, describe
    nb = json.loads((ROOT/'nbs'/'index.ipynb').read_text())
    [cell] = [c for c in nb['cells'] if c['cell_type'] == 'code' and 'RECIPES' in ''.join(c['source'])]
    shown = ''.join(''.join(o.get('text', '')) for o in cell['outputs'])
    assert shown == ''.join(f"{name:7} {describe(r)}\n" for name, r in RECIPES.items())

def test_readme_is_made_from_index():
    "README.md is what `.ci/readme.py` makes from nbs/index.ipynb (settings.ini's readme_nb)."
    r = subprocess.run([sys.executable, str(ROOT/'.ci'/'readme.py'), '--check'], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr

NOT_MEASURED = {'99.5%': "a target (the bench's time to 99.5%)", '15 s': "the weights download's time-out"}

def test_figures_agree_with_benchmarks():
    "Every accuracy or time quoted in the README's or a notebook's prose is one BENCHMARKS.md records."
    bench = (ROOT/'BENCHMARKS.md').read_text()
    texts = {'README.md': (ROOT/'README.md').read_text()}
    for f in sorted((ROOT/'nbs').glob('*.ipynb')):
        texts[f.name] = '\n'.join(''.join(c['source']) for c in json.loads(f.read_text())['cells'] if c['cell_type'] == 'markdown')
    fig = re.compile(r'(?<![\d.])\d+(?:\.\d+)?(?:%| s\b| min\b| h\b)')
    bad = {name: xs for name, t in texts.items()
           if (xs := [x for x in fig.findall(t) if x not in NOT_MEASURED and not re.search(r'(?<![\d.])' + re.escape(x), bench)])}
    assert not bad, bad

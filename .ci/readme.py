"""README.md is made from nbs/index.ipynb, the notebook home page (settings.ini: readme_nb = index.ipynb).

nbdev's own `nbdev_readme` renders it with quarto, which the project does not assume (it is not on PyPI in a form
that installs offline). This does the same for what index.ipynb holds: its markdown cells, in order; a code cell,
unless hidden (`#| hide`), as a python block followed by its text output.

    python .ci/readme.py           # write README.md
    python .ci/readme.py --check   # exit 1 if README.md is not what index.ipynb makes
"""
import json, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

def render(nb_path=ROOT/'nbs'/'index.ipynb') -> str:
    "The README text for a notebook."
    parts = []
    for c in json.loads(Path(nb_path).read_text())['cells']:
        src = ''.join(c['source']).strip('\n')
        if c['cell_type'] == 'markdown': parts.append(src)
        elif c['cell_type'] == 'code' and not src.startswith('#| hide'):
            code = '\n'.join(l for l in src.splitlines() if not l.startswith('#|'))
            out = ''.join(''.join(o.get('text', '')) or ''.join(o.get('data', {}).get('text/plain', '')) for o in c.get('outputs', []))
            parts.append(f"```python\n{code}\n```" + (f"\n\n```\n{out.rstrip()}\n```" if out.strip() else ''))
    return '\n\n'.join(parts) + '\n'

if __name__ == '__main__':
    text, readme = render(), ROOT/'README.md'
    if '--check' in sys.argv[1:]:
        if readme.read_text() != text: sys.exit("README.md is out of date: it is made from nbs/index.ipynb; run python .ci/readme.py")
        print("README.md matches nbs/index.ipynb")
    else:
        readme.write_text(text); print(f"wrote {readme}")

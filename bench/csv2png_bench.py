"""Benchmark csv2png against a plain one-process PIL loop, side by side in one run.

Usage: python bench/csv2png_bench.py DATA_DIR [--reps 3] [--out bench/results/csv2png.json]

DATA_DIR holds full-size train.csv and test.csv (../shared/tools/make_full_mnist_csv.py builds them).
Both contenders start from the CSV files and end with the same PNG tree; each repetition writes into a fresh
folder and the order alternates, because disk writeback on these machines makes single timings noisy.
"""
import argparse, json, os, platform, shutil, statistics, sys, tempfile, time
from pathlib import Path
import numpy as np

def machine() -> dict:
    "What this ran on."
    cpu = next((l.split(':', 1)[1].strip() for l in open('/proc/cpuinfo') if l.startswith('model name')), platform.processor())
    return dict(cpu=cpu, cores=os.cpu_count(), python=platform.python_version(), os=platform.platform())

def plain_pil(data: Path, dest: Path) -> int:
    "The plain approach: pandas reads each CSV, PIL saves each row, one process."
    import pandas as pd
    from PIL import Image
    n = 0
    for split in ('train', 'test'):
        df = pd.read_csv(data/f'{split}.csv')
        px = df[[f'pixel{i}' for i in range(784)]].to_numpy(np.uint8).reshape(-1, 28, 28)
        labels = df['label'].to_numpy() if 'label' in df else None
        for i, img in enumerate(px):
            d = dest/split/(str(labels[i]) if labels is not None else '')
            d.mkdir(parents=True, exist_ok=True)
            Image.fromarray(img, 'L').save(d/f'{i+1:05d}.png')
        n += len(px)
    return n

def ours(data: Path, dest: Path) -> int:
    "mnist_fastai.csv2png: validated numpy parse, hand-rolled PNG encoder, atomic writes, one process per core."
    from mnist_fastai.csv2png import csv2png
    return sum(r['images'] for r in csv2png(data, dest, progress=False))

def _mount_point(p: Path) -> str:
    p = Path(p).resolve()
    while not os.path.ismount(p): p = p.parent
    return str(p)

def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('data', type=Path)
    ap.add_argument('--reps', type=int, default=3)
    ap.add_argument('--dest', type=Path, default=None, help='folder (and so filesystem) to write into; default: beside DATA_DIR')
    ap.add_argument('--out', type=Path, default=Path(__file__).parent/'results'/'csv2png.json')
    a = ap.parse_args()
    runs = {'plain PIL loop (1 process)': plain_pil, 'mnist_fastai.csv2png': ours}
    times = {k: [] for k in runs}
    work = Path(tempfile.mkdtemp(prefix='csv2png_bench_', dir=a.dest or Path(a.data).parent))
    n = None
    try:
        for rep in range(a.reps):
            for name in (list(runs) if rep % 2 == 0 else list(runs)[::-1]):
                dest = work/f'{rep}_{len(times[name])}_{name[:5]}'
                t = time.perf_counter(); n = runs[name](a.data, dest); times[name].append(time.perf_counter() - t)
                shutil.rmtree(dest); os.sync()     # start the next run with the disk quiet
    finally: shutil.rmtree(work, ignore_errors=True)
    m = machine()
    base = statistics.median(times['plain PIL loop (1 process)'])
    rows = [dict(name=k, images=n, median_s=round(statistics.median(v), 2), all_s=[round(o, 2) for o in v],
                 images_per_s=round(n/statistics.median(v)), speedup=round(base/statistics.median(v), 1)) for k, v in times.items()]
    print(f"csv2png benchmark: {n} images (CSV -> PNG tree, end to end), {a.reps} alternating reps, median")
    m['dest_fs'] = next((l.split()[2] for l in open('/proc/mounts') if l.split()[1] == _mount_point(work)), '?')
    print(f"machine: {m['cpu']}, {m['cores']} cores, Python {m['python']}; writing to {work.parent} ({m['dest_fs']})")
    print(f"{'approach':32} {'median s':>9} {'images/s':>9} {'speedup':>8}  all runs (s)")
    for r in rows: print(f"{r['name']:32} {r['median_s']:9.2f} {r['images_per_s']:9,} {r['speedup']:7.1f}x  {r['all_s']}")
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(dict(benchmark='csv2png', machine=m, dest=str(work.parent), date=time.strftime('%Y-%m-%d'), results=rows), indent=1) + '\n')
    print(f"wrote {a.out}")

if __name__ == '__main__': main()

"""Run `python -m MODULE ARGS...` and SIGKILL it at a chosen instant, not after a guessed delay:

    python tests/kill_at.py open|rename NAME N MODULE ARGS...

The process kills itself from inside `open`, just after it opens for writing the N-th file whose name contains
NAME, or from inside `os.replace`, just before the N-th rename to a file called NAME (the file written whole, not
yet in place). It is a script, not a module, so `accelerate launch tests/kill_at.py ...` runs it in every process;
only a process that writes NAME kills itself."""
import builtins, os, runpy, signal, sys

where, name, n, module = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
real_open, real_replace, seen = builtins.open, os.replace, [0]

def hit():
    seen[0] += 1
    if seen[0] == n: os.kill(os.getpid(), signal.SIGKILL)

def open_(f, mode='r', *a, **k):
    fh = real_open(f, mode, *a, **k)
    if where == 'open' and ('w' in mode or 'x' in mode) and name in os.path.basename(str(f)): hit()
    return fh

def replace_(a, b, **k):
    if where == 'rename' and os.path.basename(str(b)) == name: hit()
    return real_replace(a, b, **k)

builtins.open, os.replace = open_, replace_
sys.argv = [module] + sys.argv[5:]
runpy.run_module(module, run_name='__main__', alter_sys=True)

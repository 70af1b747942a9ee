__version__ = "0.1.0"

import warnings
# fastai's imports call torch.jit.script, which torch 2.14 deprecates with a FutureWarning on every command. Python runs
# this file before any mnist_fastai module, so the filter is in place before fastai is first imported, whatever order a
# module lists its imports in (tests/test_structure.py checks every module).
warnings.filterwarnings('ignore', message='`torch.jit.script` is deprecated')

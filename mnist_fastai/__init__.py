__version__ = "0.1.0"

import warnings
# fastai's imports call torch.jit.script, which torch 2.14 deprecates with a FutureWarning on every command
warnings.filterwarnings('ignore', message='`torch.jit.script` is deprecated')

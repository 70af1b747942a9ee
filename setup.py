"Install mnist_fastai from the settings in settings.ini (nbdev 3 reads pyproject.toml's [tool.nbdev] table, nbdev 2 settings.ini)."
from configparser import ConfigParser
from pathlib import Path
import setuptools

cfg = ConfigParser(delimiters=['='])
cfg.read(Path(__file__).parent/'settings.ini', encoding='utf-8')
cfg = cfg['DEFAULT']
reqs = cfg.get('requirements', '').split()
dev_reqs = cfg.get('dev_requirements', '').split()

setuptools.setup(
    name=cfg['lib_name'], version=cfg['version'], description=cfg['description'],
    author=cfg['author'], author_email=cfg['author_email'], license='Apache-2.0',
    long_description=(Path(__file__).parent/'README.md').read_text(encoding='utf-8'),
    long_description_content_type='text/markdown',
    url=cfg['git_url'], packages=setuptools.find_packages(include=['mnist_fastai', 'mnist_fastai.*']),
    python_requires=f">={cfg['min_python']}", install_requires=reqs,
    extras_require={'dev': dev_reqs}, include_package_data=True, zip_safe=False,
    entry_points={'nbdev': [f"{cfg['lib_path']}={cfg['lib_path']}._modidx:d"],
                  # nbdev 3 has only nbdev-export etc.; the project's card (and nbdev 2) write nbdev_export
                  'console_scripts': [f"nbdev_{c}=mnist_fastai.cli:nbdev_{c}" for c in ('export', 'test', 'clean')]},
)

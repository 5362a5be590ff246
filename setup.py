"""lumen_mm: Lumen as an MMDetection 3.x plugin.

``install_requires`` gives the ranges lumen_mm works with;
``requirements/runtime.txt`` pins the versions ``make env`` installs and the
tests ran with (tests/test_packaging.py checks that the pins fall in these
ranges). Two requirements are not listed because pip cannot install them
from PyPI on their own, and ``scripts/setup_env.sh`` (``make env``) installs
them first:

* mmcv 2.1 with its compiled ops (mmdet needs ``>=2.0.0rc4,<2.2.0``): PyPI
  has only its source archive, whose ``setup.py`` does not build beside
  setuptools >= 81 or torch 2.14's C++20 headers. mmdet's own wheel leaves
  mmcv out for the same reason (OpenMMLab installs it with ``mim``).
* mmpose 1.3 (and xtcocotools built against numpy 2): mmpose requires
  chumpy, which does not build; the script installs mmpose with
  ``--no-deps`` plus its real requirements, listed below.

A non-editable install ships ``configs/``, ``model-index.yml`` and the
``tools/`` scripts inside the package under ``lumen_mm/.mim/``, where
mmengine looks for ``_base_ = 'lumen_mm::...'`` configs and ``mim`` for
``mim search lumen_mm`` / ``mim train lumen_mm``, as mmdet does for its own.
"""
import os.path as osp
import shutil

from setuptools import find_packages, setup
from setuptools.command.build_py import build_py

HERE = osp.dirname(osp.abspath(__file__))
# what lumen_mm/.mim holds in an installed package: (source, name in .mim)
MIM_FILES = [('configs', 'configs'), ('model-index.yml', 'model-index.yml'),
             ('tools', 'tools')]


class BuildWithMim(build_py):
    """``build_py`` that also copies :data:`MIM_FILES` into the package.

    The copy goes to the build directory only, so the source tree stays as
    it is. An editable install reads the package from the source tree and
    gets no ``.mim`` (mmengine looks for it beside the installed package):
    there, configs are used by path.
    """

    def run(self) -> None:
        super().run()
        if getattr(self, 'editable_mode', False):
            return
        mim_dir = osp.join(self.build_lib, 'lumen_mm', '.mim')
        for src, dst in MIM_FILES:
            src, dst = osp.join(HERE, src), osp.join(mim_dir, dst)
            if not osp.exists(src):
                raise FileNotFoundError(
                    f'{src} is missing: build lumen_mm from a complete '
                    'checkout or from its source archive (MANIFEST.in).')
            if osp.isdir(dst):
                shutil.rmtree(dst)
            if osp.isdir(src):
                shutil.copytree(
                    src, dst,
                    ignore=shutil.ignore_patterns('__pycache__', '*.pyc'))
            else:
                shutil.copyfile(src, dst)


def read_requirements(name: str) -> list:
    """Requirement lines of ``requirements/<name>.txt``, without comments."""
    with open(osp.join(HERE, 'requirements', f'{name}.txt')) as f:
        lines = (line.split('#', 1)[0].strip() for line in f)
        return [line for line in lines if line]


setup(
    name='lumen_mm',
    version='0.1.0',
    description='Lumen (vision-centric large multimodal model) for '
    'MMDetection 3.x',
    packages=find_packages(include=['lumen_mm', 'lumen_mm.*']),
    cmdclass={'build_py': BuildWithMim},
    python_requires='>=3.10',
    install_requires=[
        # weights_only loading with an allow-list (lumen_mm.utils.safe_load)
        'torch>=2.6',
        'torchvision>=0.21',
        'numpy>=1.24,<3',
        # lumen_mm.registry and safe_load rely on mmengine 0.10's config
        # and checkpoint internals; mmdet 3.3's API
        'mmengine>=0.10.7,<0.11',
        'mmdet>=3.3.0,<3.4',
        # LlavaForConditionalGeneration's 5.x layout, peft's LoRA
        'transformers>=5.24,<6',
        'peft>=0.21,<1',
        'tokenizers',
        # LLaVA-1.1's slow SentencePiece tokenizer (tokenizer.model)
        'sentencepiece',
        'protobuf',
        'safetensors',
        'segment-anything>=1.0',
        'pycocotools>=2.0.7',
        # torch 2.14 asks for >= 77; mmengine resolves `mmdet::` and
        # `lumen_mm::` config bases with pkg_resources, gone in 81
        'setuptools>=77,<81',
        # the default runtime logs to TensorBoard (switch: LUMEN_TENSORBOARD)
        'tensorboard',
        'tqdm',
        'pillow',
        'opencv-python>=4.10,<5',  # mmcv 2.1 predates OpenCV 5
        # mmpose 1.3's own requirements but chumpy (see above)
        'json_tricks',
        'munkres',
        'scipy',
        'matplotlib',
    ],
    extras_require={
        'tests': read_requirements('tests'),
        # tools/webui.py, the browser demo
        'demo': ['gradio>=6,<7'],
        # mmdet's tools/analysis_tools/analyze_logs.py plots with seaborn
        'analysis': ['seaborn'],
        # the *_deepspeed-zero2.py config (mmengine's DeepSpeedStrategy)
        'deepspeed': ['deepspeed'],
    },
)

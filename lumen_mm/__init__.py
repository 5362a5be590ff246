"""lumen_mm: Lumen, an instruction-following multimodal model for dense vision
tasks, as an MMDetection 3.x plugin.

Importing the package registers its modules in mmdet's registries (scope
``mmdet``), so any mmdet config can use them through
``custom_imports=dict(imports=['lumen_mm'], allow_failed_imports=False)``.
It also lets torch load mmengine checkpoints with ``weights_only=True``
(:func:`lumen_mm.utils.safe_load.register_safe_globals`) and config bases be
named ``'lumen_mm::lumen/...'`` (:mod:`lumen_mm.registry`).
"""
from .utils.safe_load import register_checkpoint_loader, register_safe_globals

register_safe_globals()  # before anything below loads a checkpoint
# mmengine's local checkpoint loader with integrity and structure checks
register_checkpoint_loader()

try:  # the two requirements pip cannot install from PyPI (setup.py)
    import mmcv.ops  # noqa: F401  (mmdet's models need the compiled ops)
    import mmpose  # noqa: F401
except ImportError as error:
    raise ImportError(
        f'lumen_mm needs mmcv 2.1 with its compiled ops and mmpose 1.3 '
        f'({error}); pip cannot install them from PyPI alone. Run `make env` '
        '(scripts/setup_env.sh) or install them as that script does.'
    ) from error

from . import registry  # noqa: E402,F401  (the lumen_mm:: config scope)
from . import datasets, evaluation, models  # noqa: E402,F401  (registration)
from . import engine  # noqa: E402,F401  (hooks)
from . import visualization  # noqa: E402,F401  (LumenLocalVisualizer)

__version__ = '0.1.0'

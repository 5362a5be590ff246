"""lumen_mm: Lumen, an instruction-following multimodal model for dense vision
tasks, as an MMDetection 3.x plugin.

Importing the package registers its modules in mmdet's registries (scope
``mmdet``), so any mmdet config can use them through
``custom_imports=dict(imports=['lumen_mm'], allow_failed_imports=False)``.
"""
from . import datasets, evaluation, models  # noqa: F401  (registration)
from . import engine  # noqa: F401  (hooks)
from . import visualization  # noqa: F401  (LumenLocalVisualizer)

__version__ = '0.1.0'

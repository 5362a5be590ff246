"""The ``lumen_mm`` scope: what ``_base_ = 'lumen_mm::...'`` needs.

lumen_mm registers its modules in mmdet's registries (scope ``mmdet``). A
config that inherits an installed lumen_mm config through
``_base_ = 'lumen_mm::lumen/...'`` is read by mmengine 0.10.7 as follows:

* ``mmengine.config.utils.MODULE2PACKAGE`` must name the package, or
  mmengine refuses the prefix ("mmengine does not support to load lumen_mm
  config"); the table lists OpenMMLab's own repositories only, and this
  module adds ``lumen_mm`` to it;
* the base file is then read from ``<installed lumen_mm>/.mim/configs/``
  (``setup.py`` ships the configs there, as mmdet ships its own);
* every dict with a ``type`` in that base gets ``_scope_='lumen_mm'``, and
  building it imports ``lumen_mm.registry`` (this module) and looks for
  registries of scope ``lumen_mm``. Each registry here is a child of mmdet's
  registry of the same name, holds nothing itself and looks up its parents,
  so ``lumen_mm.Lumen`` and ``mmdet.DetDataPreprocessor`` both resolve.
  Without them mmengine falls back to its root registries, which do not
  hold mmdet's or lumen_mm's types.

The prefix is known once lumen_mm is imported: the tools of this repository
import it before they read a config; in other programs, ``import lumen_mm``
before ``Config.fromfile``. A plain ``custom_imports`` comes too late for
``_base_`` (mmengine reads bases before it imports custom modules).
"""
from mmdet import registry as mmdet_registry
from mmengine.config.utils import MODULE2PACKAGE
from mmengine.registry import Registry

SCOPE = 'lumen_mm'


def _child(parent: Registry) -> Registry:
    """A ``lumen_mm`` registry that resolves names through ``parent``.

    It imports lumen_mm and the parent's own locations on first use (the
    parent's lazy imports are not triggered by a child's look-up).
    """
    # _locations is Registry's only record of where a registry's modules
    # live; mmengine has no public accessor for it.
    return Registry(
        parent.name,
        parent=parent,
        scope=SCOPE,
        locations=['lumen_mm', *parent._locations])


MODULE2PACKAGE.setdefault(SCOPE, 'lumen_mm')

RUNNERS = _child(mmdet_registry.RUNNERS)
RUNNER_CONSTRUCTORS = _child(mmdet_registry.RUNNER_CONSTRUCTORS)
LOOPS = _child(mmdet_registry.LOOPS)
HOOKS = _child(mmdet_registry.HOOKS)
DATASETS = _child(mmdet_registry.DATASETS)
DATA_SAMPLERS = _child(mmdet_registry.DATA_SAMPLERS)
TRANSFORMS = _child(mmdet_registry.TRANSFORMS)
MODELS = _child(mmdet_registry.MODELS)
MODEL_WRAPPERS = _child(mmdet_registry.MODEL_WRAPPERS)
WEIGHT_INITIALIZERS = _child(mmdet_registry.WEIGHT_INITIALIZERS)
OPTIMIZERS = _child(mmdet_registry.OPTIMIZERS)
OPTIM_WRAPPERS = _child(mmdet_registry.OPTIM_WRAPPERS)
OPTIM_WRAPPER_CONSTRUCTORS = _child(mmdet_registry.OPTIM_WRAPPER_CONSTRUCTORS)
PARAM_SCHEDULERS = _child(mmdet_registry.PARAM_SCHEDULERS)
METRICS = _child(mmdet_registry.METRICS)
EVALUATOR = _child(mmdet_registry.EVALUATOR)
TASK_UTILS = _child(mmdet_registry.TASK_UTILS)
VISUALIZERS = _child(mmdet_registry.VISUALIZERS)
VISBACKENDS = _child(mmdet_registry.VISBACKENDS)
LOG_PROCESSORS = _child(mmdet_registry.LOG_PROCESSORS)

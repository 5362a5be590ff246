from .lumen import Lumen

__all__ = ['Lumen']

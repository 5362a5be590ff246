from .loc_words_loss import LocWordsLoss

__all__ = ['LocWordsLoss']

"""Words of the description, read back from the ``[LOC]`` state."""
from typing import Sequence

import torch
import torch.nn.functional as F
from mmdet.registry import MODELS
from torch import Tensor, nn


@MODELS.register_module()
class LocWordsLoss(nn.Module):
    """Cross entropy of a description's words, predicted from its ``[LOC]``
    state by a linear probe (not in the paper).

    The paper's LLM is pretrained and knows the words of an instruction. A
    tiny LLM trained from scratch on Lumen-Shapes learnt to carry only the
    class word into ``[LOC]``; side, colour and anchor words ("the
    left-most star", "the star below the red cross") did not reach the
    state, since the aligner cannot use a difference the state does not
    yet have, so the heatmap loss never asks for it. This loss asks the
    state to name all of its description's words (a bag of words: the
    target spreads evenly over the distinct tokens), so that they are there
    for the aligner to learn from. The probe is used in training only.

    Args:
        text_dim: width of the ``[LOC]`` state (filled in by :class:`Lumen`).
        vocab_size: tokens the probe predicts (filled in by :class:`Lumen`).
        loss_weight: weight of the loss.
    """

    def __init__(self, text_dim: int, vocab_size: int,
                 loss_weight: float = 1.0) -> None:
        super().__init__()
        self.probe = nn.Linear(text_dim, vocab_size)
        self.loss_weight = loss_weight

    def forward(self, loc_states: Tensor,
                description_ids: Sequence[Sequence[int]]) -> Tensor:
        """Mean over descriptions of -sum_w t(w) log p(w | state), with t
        uniform over the description's distinct token ids.

        Args:
            loc_states: (P, D) ``[LOC]`` states of P location prompts.
            description_ids: token ids of each prompt's description.
        """
        if not len(description_ids):  # keep the probe in the graph (DDP)
            return sum(p.sum() * 0 for p in self.probe.parameters())
        if any(not len(ids) for ids in description_ids):
            raise ValueError('A location prompt has no description tokens; '
                             'build it with ConversationTemplate.'
                             'location_prompt.')
        target = loc_states.new_zeros(len(description_ids),
                                      self.probe.out_features,
                                      dtype=torch.float32)
        for row, ids in enumerate(description_ids):
            target[row, torch.as_tensor(ids, device=target.device)] = 1
        target = target / target.sum(1, keepdim=True)
        log_p = F.log_softmax(self.probe(loc_states).float(), dim=-1)
        return -(target * log_p).sum(1).mean() * self.loss_weight

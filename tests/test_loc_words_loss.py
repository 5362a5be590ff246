"""LocWordsLoss: the [LOC] state asked to name its description's words."""
import math

import pytest
import torch


def _loss(vocab=5, dim=3):
    from lumen_mm.models.losses import LocWordsLoss
    loss = LocWordsLoss(text_dim=dim, vocab_size=vocab)
    torch.nn.init.zeros_(loss.probe.weight)
    return loss


def test_target_spreads_over_the_distinct_words():
    loss = _loss()
    probs = torch.tensor([0.1, 0.4, 0.2, 0.2, 0.1])
    with torch.no_grad():
        loss.probe.bias.copy_(probs.log())
    value = loss(torch.randn(1, 3), [[1, 2, 1]])  # "1" twice counts once
    expected = -(0.5 * math.log(0.4) + 0.5 * math.log(0.2))
    assert value.item() == pytest.approx(expected, rel=1e-5)


def test_states_that_name_their_words_score_lower():
    loss = _loss(vocab=4, dim=2)
    with torch.no_grad():  # state e_i says word i
        loss.probe.weight.copy_(10 * torch.eye(4, 2))
    states = torch.eye(2)
    right = loss(states, [[0], [1]])
    swapped = loss(states, [[1], [0]])
    same = loss(torch.ones(2, 2), [[0], [1]])
    assert right < 0.01 < same < swapped


def test_batch_without_location_prompts_keeps_the_probe_in_the_graph():
    loss = _loss()
    value = loss(None, [])
    value.backward()
    assert value.item() == 0 and loss.probe.weight.grad is not None


def test_empty_description_is_refused():
    with pytest.raises(ValueError, match='location_prompt'):
        _loss()(torch.randn(2, 3), [[1], []])

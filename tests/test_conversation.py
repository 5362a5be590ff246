"""The Sec. 3.1.1 template: label masks, [LOC], special-token safety."""
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from transformers import AutoTokenizer

from lumen_mm.models.backbones.conversation import (IGNORE_INDEX, IMAGE_TOKEN,
                                                   LOC_TOKEN, LUMEN_SPECIAL_TOKENS,
                                                   ConversationTemplate)


@pytest.fixture(scope='module')
def conv(tokenizer_dir):
    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    tok.add_tokens([IMAGE_TOKEN, *LUMEN_SPECIAL_TOKENS], special_tokens=True)
    return ConversationTemplate(tok, num_image_tokens=4)


def test_description_ids_are_the_described_words(conv):
    p = conv.location_prompt('ground', ' the star left of [LOC] ')
    n = len(p.description_ids)
    assert p.input_ids[p.prefix_len:p.prefix_len + n] == p.description_ids
    assert conv.tokenizer.decode(p.description_ids) == \
        ' the star left of [LOC]'
    assert conv.token_id(LOC_TOKEN) not in p.description_ids


def test_labels_cover_the_answer_only(conv):
    p = conv.location_prompt('det', 'red circle')
    tok = conv.tokenizer
    answer = [i for i, label in zip(p.input_ids, p.labels)
              if label != IGNORE_INDEX]
    assert tok.decode(answer) == (' Sure, the location is[LOC]. The task '
                                  'output is[DET].</s>')
    first = p.labels.index(answer[0])
    assert all(label == IGNORE_INDEX for label in p.labels[:first])
    assert p.labels[first:] == p.input_ids[first:]


def test_loc_position_and_shared_prefix(conv):
    a = conv.location_prompt('det', 'circle', with_answer=False)
    b = conv.location_prompt('det', 'a much longer description')
    loc = conv.token_id(LOC_TOKEN)
    assert a.input_ids[-1] == loc and a.input_ids.count(loc) == 1
    assert a.prefix_len == b.prefix_len
    assert a.input_ids[:a.prefix_len] == b.input_ids[:b.prefix_len]
    assert a.input_ids[a.prefix_len] != b.input_ids[b.prefix_len] or \
        a.input_ids[a.prefix_len + 1] != b.input_ids[b.prefix_len + 1]
    image = conv.token_id(IMAGE_TOKEN)
    assert a.input_ids[:a.prefix_len].count(image) == 4


@pytest.mark.parametrize('text', ['[LOC]', 'the <image> of [DET] </s>',
                                  '[GROUND][SEG]<s>'])
def test_special_strings_in_user_text_stay_text(conv, text):
    p = conv.location_prompt('ground', text, with_answer=False)
    special = {conv.token_id(t) for t in [IMAGE_TOKEN, *LUMEN_SPECIAL_TOKENS]}
    special |= {conv.tokenizer.eos_token_id, conv.tokenizer.bos_token_id}
    user = p.input_ids[p.prefix_len:-1]  # before the answer's [LOC]
    assert not special & set(user)
    assert text in conv.tokenizer.decode(user)


def test_unknown_task_and_empty_description(conv):
    with pytest.raises(ValueError, match='Unknown task'):
        conv.location_prompt('detect', 'circle')
    with pytest.raises(ValueError, match='Empty description'):
        conv.location_prompt('det', '  ')


@settings(max_examples=200, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text(min_size=1, max_size=40).filter(lambda s: s.strip()))
def test_no_user_text_becomes_a_special_token(conv, text):
    """Arbitrary unicode descriptions never yield special ids and round-trip."""
    p = conv.location_prompt('det', text, with_answer=False)
    user = p.input_ids[p.prefix_len:-1]
    special = set(conv.tokenizer.all_special_ids)
    special |= {conv.token_id(t) for t in [IMAGE_TOKEN, *LUMEN_SPECIAL_TOKENS]}
    assert not special & set(user)
    assert conv.tokenizer.decode(user).startswith(' ' + text.strip())

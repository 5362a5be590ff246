"""Special-token injection (issue 8): no user text becomes a special token.

Class names, referring sentences, questions, answers and free-form
instructions are arbitrary unicode here (hypothesis); the conversation
builder must give no special id inside them, and decoding their ids must give
the text back. tests/test_conversation.py covers the detection template with
fixed and random descriptions; this file covers every builder.
"""
from collections import Counter

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from transformers import AutoTokenizer

from lumen_mm.models.backbones.conversation import (IMAGE_TOKEN,
                                                   LUMEN_SPECIAL_TOKENS,
                                                   ConversationTemplate)
from lumen_mm.tasks import TASKS, TEMPLATE_TASKS

# printable or not, any unicode; the builders strip outer whitespace
TEXT = st.text(min_size=1, max_size=30).filter(lambda s: s.strip())
# strings that look like special tokens, mixed into the text
SPECIAL_STRINGS = [IMAGE_TOKEN, *LUMEN_SPECIAL_TOKENS, '</s>', '<s>',
                   '<unk>', '<pad>']
TRICKY = st.lists(st.one_of(TEXT, st.sampled_from(SPECIAL_STRINGS)),
                  min_size=1, max_size=4).map(''.join).filter(
                      lambda s: s.strip())
PROPERTY = settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture(scope='module')
def conv(tokenizer_dir):
    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    tok.add_tokens([IMAGE_TOKEN, *LUMEN_SPECIAL_TOKENS], special_tokens=True)
    return ConversationTemplate(tok, num_image_tokens=4)


def _special_ids(conv) -> set:
    ids = set(conv.tokenizer.all_special_ids)
    return ids | {
        conv.token_id(t)
        for t in [IMAGE_TOKEN, *LUMEN_SPECIAL_TOKENS]
    }


def _check_user_text(conv, prompt, plain, *texts):
    """The prompt holds exactly the special ids of the same prompt built
    from harmless text (``plain``), and decodes to text holding ``texts``."""
    special = _special_ids(conv)
    assert Counter(i for i in prompt.input_ids if i in special) == Counter(
        i for i in plain.input_ids if i in special)
    decoded = conv.tokenizer.decode(prompt.input_ids)
    for text in texts:
        assert text in decoded


@PROPERTY
@given(text=TRICKY, task=st.sampled_from(TEMPLATE_TASKS))
def test_location_prompt(conv, text, task):
    p = conv.location_prompt(task, text)
    _check_user_text(conv, p, conv.location_prompt(task, 'x'),
                     ' ' + text.strip())
    assert p.input_ids.count(conv.token_id('[LOC]')) == 1
    assert p.input_ids.count(conv.token_id(TASKS[task].token)) == 1


@PROPERTY
@given(question=TRICKY, answer=TRICKY)
def test_chat_prompt(conv, question, answer):
    p = conv.chat_prompt([(question, answer)])
    _check_user_text(conv, p, conv.chat_prompt([('x', 'y')]),
                     question.strip(), ' ' + answer.strip())
    assert p.input_ids.count(conv.tokenizer.eos_token_id) == 1
    assert p.input_ids.count(conv.token_id(IMAGE_TOKEN)) == 4


@PROPERTY
@given(instruction=TRICKY)
def test_instruction_prompt(conv, instruction):
    p = conv.instruction_prompt(instruction)
    _check_user_text(conv, p, conv.instruction_prompt('x'),
                     instruction.strip())
    assert not _special_ids(conv) & set(p.input_ids[p.prefix_len:])

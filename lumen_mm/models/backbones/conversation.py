"""Lumen's conversation template (Sec. 3.1.1) and its tokenisation.

Every vision-centric task is asked with one template::

    USER: <image>
    Please find the location of {description}. Respond with {format}.
    ASSISTANT: Sure, the location is [LOC]. The task output is [TASK].

in LLaVA's v1 layout (system prompt, ``USER:``/``ASSISTANT:`` roles, ``</s>``
after the answer). Everything that does not depend on the description comes
before it, so all prompts about one image share a token prefix.

Special tokens are only ever inserted by id. The text between two of them is
tokenised as one string, as LLaVA tokenised a whole prompt (a SentencePiece
tokenizer marks the start of every string it is given with "▁", so text cut
into pieces would get marks LLaVA never saw). User text (class names,
referring sentences, questions) is tokenised with
``split_special_tokens=True``, so a description that contains ``[LOC]`` or
``<image>`` stays plain text.
"""
from bisect import bisect_right
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

from lumen_mm.tasks import TASKS, TEMPLATE_TASKS, get_task

LOC_TOKEN = '[LOC]'
IMAGE_TOKEN = '<image>'
# Task tokens route the Stage-2 decoding pathway (Sec. 3.2.2); their order
# fixes their token ids.
LUMEN_SPECIAL_TOKENS: List[str] = [
    LOC_TOKEN, *(TASKS[t].token for t in TEMPLATE_TASKS)
]

LLAVA_V1_SYSTEM = ('A chat between a curious human and an artificial '
                   'intelligence assistant. The assistant gives helpful, '
                   "detailed, and polite answers to the human's questions.")
# The fixed strings of the template, each written once.
USER = 'USER: '
ASSISTANT = ' ASSISTANT:'
CHAT_START = '\n'
LOCATE = '\nPlease find the location of'
RESPOND = '. Respond with {}.' + ASSISTANT
ANSWER = ' Sure, the location is'
ANSWER_TASK = '. The task output is'
END = '.'
IGNORE_INDEX = -100


@dataclass
class TokenizedPrompt:
    """Token ids of one conversation, split at the end of the shared prefix."""
    input_ids: List[int]
    labels: List[int]
    prefix_len: int  # tokens shared by all prompts about the same image
    # the user's description (class name, sentence, keypoint name), if any
    description_ids: List[int] = field(default_factory=list)


@dataclass
class ConversationTemplate:
    """Builds and tokenises Lumen conversations (llava_v1 style).

    Args:
        tokenizer: a Hugging Face tokenizer that already holds Lumen's special
            tokens and the image token.
        num_image_tokens: image placeholders the LMM expects (one per patch).
        system: the system prompt; ``''`` drops it.
        image_start / image_end: optional tokens around the image patches
            (LLaVA-1.1 uses ``<im_start>``/``<im_end>``).
        max_length: the LLM's positions; a longer conversation is an error
            (the LMM sets it from ``max_position_embeddings``).
        strip_around_image: drop the whitespace next to the image tokens,
            as LLaVA-1.1's tokenizer (transformers 4.28) did around every
            token it added; LLaVA-1.5 and later keep it.
    """
    tokenizer: object
    num_image_tokens: int
    system: str = LLAVA_V1_SYSTEM
    image_start: Optional[str] = None
    image_end: Optional[str] = None
    max_length: Optional[int] = None
    strip_around_image: bool = False
    _cache: Dict[str, List[int]] = field(default_factory=dict, repr=False)

    def _text(self, text: str) -> List[int]:
        """Fixed text (a whole run between two special tokens) to ids."""
        if text not in self._cache:
            self._cache[text] = self._run(text)[0]
        return self._cache[text]

    def _run(self, *parts: str) -> List[List[int]]:
        """The ids of ``parts``, one run of text between two special tokens:
        tokenised as one string, then split where the parts meet (a token
        belongs to the part it starts in). Special-token strings in the text
        stay text."""
        text = ''.join(parts)
        try:
            text.encode('utf-8')
        except UnicodeEncodeError as e:
            raise ValueError(
                f'The text {text[e.start:e.start + 40]!r} is not valid '
                f'Unicode (a lone surrogate at character {e.start}): decode '
                'it from its bytes properly, or drop the character.') from None
        encoding = self.tokenizer(
            text, add_special_tokens=False, split_special_tokens=True,
            return_offsets_mapping=len(parts) > 1)
        if len(parts) == 1:
            return [encoding['input_ids']]
        starts, offset = [], 0
        for part in parts[:-1]:
            offset += len(part)
            starts.append(offset)
        split: List[List[int]] = [[] for _ in parts]
        for idx, (begin, _) in zip(encoding['input_ids'],
                                   encoding['offset_mapping']):
            split[bisect_right(starts, begin)].append(idx)
        return split

    def _after_image(self, text: str) -> str:
        return text.lstrip() if self.strip_around_image else text

    def _fits(self, prompt: TokenizedPrompt) -> TokenizedPrompt:
        """``prompt``, or an error when it is longer than the LLM reads."""
        if self.max_length is not None and len(
                prompt.input_ids) > self.max_length:
            raise ValueError(
                f'The conversation has {len(prompt.input_ids)} tokens, but '
                f'the language model reads at most {self.max_length} '
                f'({prompt.prefix_len} of them are the system prompt and '
                'the image): shorten the text.')
        return prompt

    def token_id(self, token: str) -> int:
        idx = self.tokenizer.convert_tokens_to_ids(token)
        if idx is None or idx == self.tokenizer.unk_token_id:
            raise KeyError(
                f'The tokenizer has no {token!r} token. Build the LMM with '
                'lumen_mm (it adds Lumen\'s special tokens) or add it with '
                '`tokenizer.add_tokens([...], special_tokens=True)`.')
        return idx

    def task_token_ids(self) -> Dict[int, str]:
        """Task name of each task token's id (routes a generated answer)."""
        return {self.token_id(TASKS[t].token): t for t in TEMPLATE_TASKS}

    def image_ids(self) -> List[int]:
        ids = [self.token_id(IMAGE_TOKEN)] * self.num_image_tokens
        if self.image_start:
            ids = [self.token_id(self.image_start)] + ids
        if self.image_end:
            ids = ids + [self.token_id(self.image_end)]
        return ids

    def image_prefix_ids(self) -> List[int]:
        """System prompt, ``USER:`` and the image."""
        bos = [self.tokenizer.bos_token_id
               ] if self.tokenizer.bos_token_id is not None else []
        head = f'{self.system} {USER}' if self.system else USER
        if self.strip_around_image:
            head = head.rstrip()
        return bos + self._text(head) + self.image_ids()

    def location_prompt(self, task: str, description: str,
                        with_answer: bool = True) -> TokenizedPrompt:
        """The Sec. 3.1.1 template for a vision-centric task.

        With ``with_answer=False`` the sequence stops right after ``[LOC]``:
        its hidden state is all that Stage 2 needs, so inference never
        generates.
        """
        spec = get_task(task)
        if spec.token is None:
            raise ValueError(f'Task {task!r} has no location template; '
                             f'those that do: {TEMPLATE_TASKS}.')
        if not description or not description.strip():
            raise ValueError('Empty description: give a class name or a '
                             'referring sentence to locate.')
        locate, words, respond, answer = self._run(
            self._after_image(LOCATE), ' ' + description.strip(),
            RESPOND.format(spec.answer_format), ANSWER)
        prefix = self.image_prefix_ids() + locate
        question = words + respond
        answer = answer + [self.token_id(LOC_TOKEN)]
        if with_answer:
            answer += (self._text(ANSWER_TASK) + [self.token_id(spec.token)] +
                       self._text(END) + [self.tokenizer.eos_token_id])
        ids = prefix + question + answer
        labels = [IGNORE_INDEX] * (len(prefix) + len(question)) + answer
        return self._fits(TokenizedPrompt(ids, labels, len(prefix), words))

    def chat_prompt(self, turns: Sequence[Tuple[str, str]]) -> TokenizedPrompt:
        """A LLaVA-Instruct conversation (VQA): ``(question, answer)`` turns.

        Labels cover every answer and its ``</s>``. The image goes before the
        first question; ``<image>`` inside the user's text stays text.
        """
        if not turns:
            raise ValueError('A conversation needs at least one '
                             '(question, answer) turn.')
        prefix = self.image_prefix_ids()
        ids, labels = list(prefix), [IGNORE_INDEX] * len(prefix)
        for i, (question, answer) in enumerate(turns):
            if not question.strip():
                raise ValueError('Empty question in a conversation turn.')
            start = USER if i else self._after_image(CHAT_START)
            *user, reply = self._run(start, question.strip(), ASSISTANT,
                                     ' ' + answer.strip())
            user = [idx for part in user for idx in part]
            reply = reply + [self.tokenizer.eos_token_id]
            ids += user + reply
            labels += [IGNORE_INDEX] * len(user) + reply
        return self._fits(TokenizedPrompt(ids, labels, len(prefix)))

    def instruction_prompt(self, instruction: str) -> TokenizedPrompt:
        """A free-form instruction, ready for the model to answer.

        Used at inference: the generated answer decides the task (its task
        token) and, for vision-centric answers, holds the ``[LOC]``.
        """
        if not instruction or not instruction.strip():
            raise ValueError('Empty instruction: ask the model something, '
                             'e.g. "Please find the location of the cat."')
        prefix = self.image_prefix_ids()
        ids = prefix + self._run(self._after_image(CHAT_START) +
                                 instruction.strip() + ASSISTANT)[0]
        return self._fits(
            TokenizedPrompt(ids, [IGNORE_INDEX] * len(ids), len(prefix)))


def template_texts() -> List[str]:
    """Every fixed string of the template, for training a tokenizer on it."""
    return [LLAVA_V1_SYSTEM, USER, ASSISTANT, CHAT_START, LOCATE, ANSWER,
            ANSWER_TASK, END] + [
                RESPOND.format(TASKS[t].answer_format) for t in TEMPLATE_TASKS
            ]

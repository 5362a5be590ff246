"""The README stays a front door, and no page of the docs links to nothing.

Checks that README.md is at most 300 lines and that every relative link
(and image) in README.md, docs/**/*.md and configs/lumen/README.md names a
file or folder that exists; a link's ``#anchor`` into a Markdown page must
name one of that page's headings (GitHub's slugs).
"""
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = sorted({ROOT / 'README.md', ROOT / 'configs/lumen/README.md',
                *(ROOT / 'docs').rglob('*.md')})
LINK = re.compile(r'\]\(\s*<?([^)\s>]+)>?(?:\s+"[^"]*")?\s*\)')
FENCE = re.compile(r'^(```|~~~).*?^\1', re.S | re.M)
INLINE_CODE = re.compile(r'`[^`\n]*`')


def _links(page):
    text = FENCE.sub('', page.read_text(encoding='utf-8'))
    # code spans hold no links, but keep the link text's code ([`x`](y))
    text = INLINE_CODE.sub(lambda m: 'x' * len(m.group(0)), text)
    return LINK.findall(text)


def _slug(heading):
    slug = heading.strip().lower()
    slug = re.sub(r'[^\w\- ]', '', slug)
    return slug.replace(' ', '-')


def _anchors(page):
    text = FENCE.sub('', page.read_text(encoding='utf-8'))
    return {_slug(m) for m in re.findall(r'^#+\s+(.*?)\s*#*$', text, re.M)}


def test_readme_is_short():
    lines = (ROOT / 'README.md').read_text(encoding='utf-8').splitlines()
    assert len(lines) <= 300, f'README.md has {len(lines)} lines (<= 300)'


@pytest.mark.parametrize('page', PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(page):
    broken = []
    for target in _links(page):
        if re.match(r'^[a-z][a-z0-9+.-]*:', target, re.I):  # http:, mailto:
            continue
        path, _, anchor = target.partition('#')
        dest = (page.parent / path).resolve() if path else page
        if not dest.exists():
            broken.append(target)
        elif anchor and dest.suffix == '.md' and anchor not in _anchors(dest):
            broken.append(target)
    assert not broken, f'{page.relative_to(ROOT)}: links to nothing: {broken}'

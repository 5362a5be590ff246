"""Draw docs/images/lumen_overview.png, the README's picture of Lumen.

Run from the repository root:
``.venv/bin/python docs/images/lumen_overview.py``.
"""
import os.path as osp

import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.patches import FancyBboxPatch  # noqa: E402

STAGE1, STAGE2, DATA = '#dbe9f6', '#fde9d2', '#eeeeee'


def box(ax, x, y, w, h, text, color, size=9, weight='normal'):
    ax.add_patch(
        FancyBboxPatch((x, y), w, h,
                       boxstyle='round,pad=0.02,rounding_size=0.08',
                       facecolor=color, edgecolor='#444444', linewidth=1))
    ax.text(x + w / 2, y + h / 2, text, ha='center', va='center',
            fontsize=size, weight=weight, wrap=True)


def arrow(ax, start, end, text=None, offset=(0, 0.12)):
    ax.annotate('', xy=end, xytext=start,
                arrowprops=dict(arrowstyle='->', color='#333333', lw=1.2))
    if text:
        ax.text((start[0] + end[0]) / 2 + offset[0],
                (start[1] + end[1]) / 2 + offset[1], text, ha='center',
                va='bottom', fontsize=7.5, color='#333333')


def main(out: str = osp.join(osp.dirname(__file__), 'lumen_overview.png')):
    fig, ax = plt.subplots(figsize=(11.5, 4.5), dpi=100)
    ax.set_xlim(0, 11.5)
    ax.set_ylim(0, 4.5)
    ax.axis('off')

    ax.text(0.1, 4.4, 'Stage 1: task-agnostic matching', fontsize=10,
            weight='bold', color='#1f4e79', va='top')
    ax.text(7.2, 4.4, 'Stage 2: task-specific decoding', fontsize=10,
            weight='bold', color='#9a4d00', va='top')

    box(ax, 0.1, 2.55, 1.3, 0.8, 'image\n(any size)', DATA)
    box(ax, 0.1, 0.9, 1.3, 1.1,
        'instruction\n"Please find the\nlocation of dog"', DATA, size=8)
    box(ax, 2.0, 2.55, 1.5, 0.8, 'CLIP ViT\n(frozen)', STAGE1)
    box(ax, 2.0, 0.8, 1.9, 1.3,
        'LLM (Vicuna)\n+ LoRA\n"...the location is\n[LOC]. The task\n'
        'output is [DET]."',
        STAGE1, size=8)
    box(ax, 4.7, 1.75, 1.9, 1.0, 'V-L dense aligner\nH = A(h[LOC], F)',
        STAGE1, size=8.5, weight='bold')
    box(ax, 4.7, 0.15, 1.9, 0.75, 'text answer (VQA)', DATA, size=8)
    arrow(ax, (1.4, 2.95), (2.0, 2.95))
    arrow(ax, (1.4, 1.45), (2.0, 1.45))
    arrow(ax, (2.55, 2.55), (2.55, 2.1), 'image tokens', offset=(0.45, -0.1))
    arrow(ax, (3.5, 2.95), (4.7, 2.45), 'patch features F\n(448 px)',
          offset=(0.0, 0.2))
    arrow(ax, (3.9, 1.6), (4.7, 2.0))
    ax.text(4.3, 1.45, 'h[LOC], h[H], h[W]', fontsize=7.5, color='#333333',
            va='top')
    arrow(ax, (3.9, 0.95), (4.7, 0.55))

    box(ax, 7.2, 1.75, 1.3, 1.0, 'heatmap\n+ height /\nwidth maps', STAGE2,
        size=8)
    arrow(ax, (6.6, 2.25), (7.2, 2.25))
    outputs = [
        'peaks + size maps -> boxes\n(detection, grounding)',
        'box + centre -> SAM -> masks\n(instance / referring seg.)',
        'best peak per keypoint name\n(pose)',
        'confident peaks -> count',
    ]
    for k, text in enumerate(outputs):
        y = 3.15 - k * 0.85
        box(ax, 9.0, y, 2.4, 0.7, text, STAGE2, size=7.5)
        arrow(ax, (8.5, 2.25), (9.0, y + 0.35))
    fig.savefig(out, bbox_inches='tight', facecolor='white')
    print(f'wrote {out}')


if __name__ == '__main__':
    main()

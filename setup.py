"""lumen_mm: Lumen as an MMDetection 3.x plugin."""
from setuptools import find_packages, setup

setup(
    name='lumen_mm',
    version='0.1.0',
    description='Lumen (vision-centric large multimodal model) for MMDetection 3.x',
    packages=find_packages(include=['lumen_mm', 'lumen_mm.*']),
    python_requires='>=3.10',
    # The pinned stack is installed by scripts/setup_env.sh (mmcv needs a
    # patched source build, mmpose needs --no-deps); see requirements/.
    install_requires=[],
)

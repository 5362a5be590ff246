"""Thin wrapper; the logic lives in lumen_mm.analysis.prompt_budget."""
from lumen_mm.analysis.prompt_budget import main

if __name__ == '__main__':
    main()

"""Thin wrapper; the logic lives in lumen_mm.benchmark."""
from lumen_mm.benchmark import main

if __name__ == '__main__':
    main()

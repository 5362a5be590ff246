"""Thin wrapper; the logic lives in lumen_mm.apis.demo."""
from lumen_mm.apis.demo import main

if __name__ == '__main__':
    main()

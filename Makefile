# lumen_mm — the two jobs of the README, and the set-up they share.
#   make shapes   set-up, then the Lumen-Shapes run (main job)
#   make test     set-up, then the test suite
PYTHON ?= python3.11
VENV ?= .venv
VPY := $(VENV)/bin/python
SHAPES_DATA := data/lumen_shapes

.PHONY: env test shapes

# Creates $(VENV) (idempotent: a no-op when requirements are unchanged).
env:
	PYTHON=$(PYTHON) LUMEN_VENV=$(abspath $(VENV)) bash scripts/setup_env.sh

test: env
	$(VPY) -m pytest -q tests

# Lumen-Shapes is generated once; delete $(SHAPES_DATA) to regenerate it.
$(SHAPES_DATA)/annotations/instances_val.json: | env
	$(VPY) tools/make_shapes.py --out $(SHAPES_DATA)

# Main job: generate Lumen-Shapes, train the tiny Lumen, evaluate it.
SHAPES_CONFIG := configs/lumen/shapes/lumen_tiny_shapes_det_ground.py
SHAPES_WORK := work_dirs/lumen_tiny_shapes_det_ground
shapes: env $(SHAPES_DATA)/annotations/instances_val.json
	$(VPY) tools/train.py $(SHAPES_CONFIG) --work-dir $(SHAPES_WORK)
	$(VPY) tools/test.py $(SHAPES_CONFIG) "$$(cat $(SHAPES_WORK)/last_checkpoint)" \
		--work-dir $(SHAPES_WORK) --metrics-json $(SHAPES_WORK)/metrics.json

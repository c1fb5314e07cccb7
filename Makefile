# sppfeat developer targets. `make install` then `make test` is all a fresh clone needs.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DEMO_OUT ?= demo-out

.PHONY: install test demo bench bench-caltech bench-voc bench-memory clean

install:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip
	$(BIN)/python -m pip install -e ".[test]"

test:
	$(BIN)/python -m pytest -q

demo:
	mkdir -p $(DEMO_OUT)
	$(BIN)/sppfeat extract examples/demo_images $(DEMO_OUT)/demo.h5 --overwrite
	$(BIN)/sppfeat info $(DEMO_OUT)/demo.h5
	$(BIN)/sppfeat train-svm $(DEMO_OUT)/demo.h5 $(DEMO_OUT)/demo_svm.h5 --overwrite --protocol per-class --train-per-class 6 --test-per-class 0
	$(BIN)/sppfeat eval $(DEMO_OUT)/demo_svm.h5 $(DEMO_OUT)/demo.h5 --report $(DEMO_OUT)/report.json --plots $(DEMO_OUT)/plots --overwrite
	$(BIN)/sppfeat predict $(DEMO_OUT)/demo_svm.h5 examples/demo_images/pizza --top-k 2
	$(BIN)/sppfeat predict $(DEMO_OUT)/demo_svm.h5 examples/demo_images --output $(DEMO_OUT)/predictions.csv --top-k 3 --overwrite

bench:
	$(BIN)/python benchmarks/throughput.py

bench-caltech:
	$(BIN)/python benchmarks/caltech101.py

bench-voc:  # make bench-voc VOC=/path/to/VOCdevkit
	$(BIN)/python benchmarks/voc2007.py $(VOC)

bench-memory:
	$(BIN)/python benchmarks/memory.py

clean:
	rm -rf $(DEMO_OUT) bench-out .pytest_cache

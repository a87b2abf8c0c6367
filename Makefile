# make demo  -- set up, compile the trained keyword spotter, show its listing, simulate an utterance and
#               the test split, compare with ONNX Runtime
# make test  -- set up and run the whole test suite
# make fuzz  -- run the fuzz targets (container, assembler, ONNX frontend, ONNX attributes) for FUZZ_SECONDS in all
# Everything runs inside .venv, which the first target that needs it creates.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
OUT    := out
FUZZ_SECONDS ?= 600

.PHONY: demo test fuzz lint docs bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test,finetune,sweep]'
	touch $(STAMP)

demo: $(STAMP)
	@mkdir -p $(OUT)
	$(BIN)/rnnaccel-compile examples/kws/kws_lstm64.onnx -o $(OUT)/kws.rnna --listing $(OUT)/kws.s \
		--report $(OUT)/kws_report.json --calibration examples/kws/calib.npz
	@echo "--- head of the listing ($(OUT)/kws.s) ---"
	@sed -n '1,30p' $(OUT)/kws.s | cut -c1-160
	@echo "--- one utterance (the word 'on') ---"
	$(BIN)/rnnaccel-sim $(OUT)/kws.rnna --inputs examples/kws/utterance.npz --outputs $(OUT)/kws_out.npz \
		--trace $(OUT)/kws_trace.jsonl
	$(BIN)/python examples/compare.py examples/kws/kws_lstm64.onnx examples/kws/utterance.npz $(OUT)/kws_out.npz
	@echo "--- the 1200-utterance test split, chip against float ---"
	$(BIN)/rnnaccel-eval $(OUT)/kws.rnna --data examples/kws/test.npz --reference examples/kws/kws_lstm64.onnx

test: $(STAMP)
	$(BIN)/python -m pytest -q

fuzz: $(STAMP)
	$(BIN)/python -m tests.fuzz --seconds $(FUZZ_SECONDS)

lint: $(STAMP)
	$(BIN)/python -m pip install --quiet ruff
	$(BIN)/ruff check compiler isa runtime_sim tests bench examples

docs: $(STAMP)
	$(BIN)/python -m isa.docgen
	$(BIN)/python -m compiler.frontend.opdoc

bench: $(STAMP)
	$(BIN)/python bench/run.py
	$(BIN)/python bench/schedule.py
	$(BIN)/python bench/streaming.py
	$(BIN)/python bench/compression.py
	$(BIN)/python bench/fitting.py
	$(BIN)/python bench/hostile.py
	$(BIN)/python bench/conv.py
	$(BIN)/python bench/partitioned.py
	$(BIN)/python bench/numerics.py
	$(BIN)/python bench/qdq.py

clean:
	rm -rf $(VENV) $(OUT) .pytest_cache .hypothesis

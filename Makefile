# make demo  -- set up, compile the KWS example, show its listing, simulate it, compare with ONNX Runtime
# make test  -- set up and run the whole test suite
# make fuzz  -- run the fuzz targets (container, assembler, ONNX frontend) for FUZZ_SECONDS in all
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
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	@mkdir -p $(OUT)
	$(BIN)/rnnaccel-compile examples/kws_lstm.onnx -o $(OUT)/kws.rnna --listing $(OUT)/kws.s \
		--report $(OUT)/kws_report.json --calibration examples/kws_calib.npz
	@echo "--- head of the listing ($(OUT)/kws.s) ---"
	@sed -n '1,30p' $(OUT)/kws.s | cut -c1-160
	@echo "--- simulation ---"
	$(BIN)/rnnaccel-sim $(OUT)/kws.rnna --inputs examples/kws_input.npz --outputs $(OUT)/kws_out.npz \
		--trace $(OUT)/kws_trace.jsonl
	@echo "--- against ONNX Runtime ---"
	$(BIN)/python examples/compare.py examples/kws_lstm.onnx examples/kws_input.npz $(OUT)/kws_out.npz

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

clean:
	rm -rf $(VENV) $(OUT) .pytest_cache .hypothesis

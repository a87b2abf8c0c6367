"""A short run of every fuzz target (tests/fuzz_targets.py): a few hundred hostile inputs each.

`make fuzz` runs the same targets for minutes with fresh seeds; this keeps them working and
catches the shallow crashes in every test run. Derandomised, so a failure here is reproducible.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings

from tests.fuzz import TARGETS
from tests.fuzz import main as fuzz_main

EXAMPLES = {"container": 300, "assembler": 200, "onnx": 150, "attributes": 150, "npz": 200}


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_fuzz_target_smoke(name):
    target = TARGETS[name]

    @settings(max_examples=EXAMPLES[name], deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(target.inputs)
    def run(value):
        target.run(value)

    run()


def test_fuzz_runner_counts_inputs(capsys):
    assert fuzz_main(["--seconds", "0.5", "--target", "assembler", "--seed", "1"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("assembler: ") and "inputs in" in out and "no failure" in out

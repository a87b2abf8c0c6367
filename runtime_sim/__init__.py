"""rnnaccel's bit-accurate, cycle-counting instruction-level simulator and its runtime API.

    from runtime_sim import load
    result = load("kws.rnna").run({"audio": x})
    result.outputs, result.raw_outputs, result.stats, result.trace
"""

from runtime_sim.partitioned import PartitionedSimulator, load, simulator_for
from runtime_sim.simulator import Result, Simulator, check_inputs, make_stats
from runtime_sim.timing import Timing, schedule

__all__ = ["PartitionedSimulator", "Result", "Simulator", "Timing", "check_inputs", "load", "make_stats", "schedule",
           "simulator_for"]

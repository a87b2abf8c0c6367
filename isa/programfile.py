"""Reading a program file, whichever kind it holds: a chip `Program` or a `PartitionedProgram`.

Temporary stand-in until the container's version 2 lands: it reads version 1 (one chip program).
"""

from isa.container import load

__all__ = ["load"]

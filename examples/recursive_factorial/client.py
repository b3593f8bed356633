"""Ask the factorial workers for ``factorial(n)``: ``python -m examples.recursive_factorial.client [n]``.

The invocation's id is ``factorial-<n>``; if that promise already exists (resolved, or being computed),
the client gets its value without any new computation.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time

from examples._common import line_buffered
from troth import Troth

TARGET = "poll://any@factorial-workers"


async def compute(n: int) -> int:
    async with Troth(group="factorial-client") as r:
        result: int = await r.options(target=TARGET).rpc(f"factorial-{n}", "factorial", n)
        return result


def main(argv: list[str] | None = None) -> int:
    line_buffered()
    parser = argparse.ArgumentParser(prog="python -m examples.recursive_factorial.client")
    parser.add_argument("n", nargs="?", type=int, default=5, help="compute n! (default 5)")
    args = parser.parse_args(argv)
    # Python refuses to print ints over 4300 digits by default; a factorial gets there quickly.
    sys.set_int_max_str_digits(0)
    started = time.perf_counter()
    result = asyncio.run(compute(args.n))
    print(f"Factorial of {args.n} is {result}")
    print(f"(answered in {time.perf_counter() - started:.3f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

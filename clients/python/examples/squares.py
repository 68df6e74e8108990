"""The sum of the squares of range(n), a task per n: the CPU-bound Python
function of the README's example, as a worker program.

    seq 1 10000 | supervisor --workers 2 --worker-cmd 'python3 clients/python/examples/squares.py'
"""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from outlast_worker import serve  # noqa: E402


def sum_of_squares(line):
    n = int(line)
    return sum(i * i for i in range(n))


if __name__ == "__main__":
    serve(sum_of_squares)

"""A worker program for `supervisor --worker-cmd`, in one import.

    # my_worker.py
    from outlast_worker import serve

    def work(line):
        return sum(i * i for i in range(int(line)))

    if __name__ == "__main__":
        serve(work)

    $ supervisor --workers 2 --worker-cmd 'python3 my_worker.py' --input numbers.txt

`serve(fn)` speaks the worker protocol (version 1, docs/worker-protocol.md):
it says hello, then for each task calls `fn(input)` with the input line (a
str) and answers with its return value (anything `json.dumps` takes), or
with the exception as the task's error (the task is retried, then a dead
letter). It returns when the supervisor closes stdin. Whatever `fn` prints
goes to stderr, which the supervisor passes through with the worker's slot:
stdout carries the frames only. `initializer()` runs once before the hello
(imports, a model to load), as `multiprocessing.Pool(initializer=...)`.

Standard library only; Python 3.8 or newer.
"""

import json
import sys
import traceback

PROTOCOL = 1

__all__ = ["serve", "PROTOCOL"]


def serve(fn, initializer=None, stdin=None, stdout=None):
    """Runs tasks through `fn` until stdin ends. Returns the number run."""
    frames_in = stdin if stdin is not None else sys.stdin
    frames_out = stdout if stdout is not None else sys.stdout
    # From here on a print() in user code cannot corrupt the frames.
    if stdout is None:
        sys.stdout = sys.stderr
    if initializer is not None:
        initializer()
    _send(frames_out, {"hello": "outlast", "protocol": PROTOCOL})
    done = 0
    for line in frames_in:
        if not line.strip():
            continue
        task = json.loads(line)
        task_id = task["id"]
        try:
            output = fn(task["input"])
            reply = {"id": task_id, "output": output}
            text = json.dumps(reply, separators=(",", ":"))
        except Exception as error:  # the task's error, not the worker's
            detail = "".join(traceback.format_exception_only(type(error), error)).strip()
            text = json.dumps({"id": task_id, "error": detail}, separators=(",", ":"))
        frames_out.write(text + "\n")
        frames_out.flush()
        done += 1
    return done


def _send(out, frame):
    out.write(json.dumps(frame, separators=(",", ":")) + "\n")
    out.flush()


if __name__ == "__main__":
    # `python3 outlast_worker.py` alone: the conformance echo worker (the
    # input back as the output; the input "fail" is an error).
    def _echo(line):
        if line == "fail":
            raise ValueError("asked to fail")
        return line

    serve(_echo)

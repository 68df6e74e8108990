"""The Python client's own tests: frames in, frames out, through pipes
made in memory (`python3 -m unittest discover clients/python`)."""

import io
import json
import os
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from outlast_worker import PROTOCOL, serve  # noqa: E402


def run(fn, tasks, initializer=None):
    stdin = io.StringIO("".join(json.dumps(t) + "\n" for t in tasks))
    stdout = io.StringIO()
    count = serve(fn, initializer=initializer, stdin=stdin, stdout=stdout)
    frames = [json.loads(line) for line in stdout.getvalue().splitlines()]
    return count, frames


class ServeTest(unittest.TestCase):
    def test_hello_first_then_one_answer_per_task(self):
        count, frames = run(lambda s: len(s), [{"id": 4, "input": "abc"}, {"id": 9, "input": ""}])
        self.assertEqual(count, 2)
        self.assertEqual(frames[0], {"hello": "outlast", "protocol": PROTOCOL})
        self.assertEqual(frames[1:], [{"id": 4, "output": 3}, {"id": 9, "output": 0}])

    def test_an_exception_is_the_tasks_error(self):
        def boom(_):
            raise KeyError("missing")

        _, frames = run(boom, [{"id": 1, "input": "x"}])
        self.assertEqual(frames[1]["id"], 1)
        self.assertIn("KeyError", frames[1]["error"])

    def test_the_initializer_runs_before_the_hello(self):
        seen = []
        _, frames = run(lambda s: seen[0] + s, [{"id": 1, "input": "b"}], initializer=lambda: seen.append("a"))
        self.assertEqual(frames[1], {"id": 1, "output": "ab"})

    def test_unicode_and_quotes_round_trip(self):
        text = 'é "q" \\ \t\u2603'
        _, frames = run(lambda s: s, [{"id": 2, "input": text}])
        self.assertEqual(frames[1], {"id": 2, "output": text})

    def test_prints_in_user_code_go_to_stderr(self):
        here = os.path.dirname(os.path.abspath(__file__))
        program = (
            "import sys; sys.path.insert(0, %r)\n"
            "from outlast_worker import serve\n"
            "def f(s):\n"
            "    print('noise', s)\n"
            "    return s\n"
            "serve(f)\n" % here
        )
        done = subprocess.run(
            [sys.executable, "-c", program],
            input='{"id":1,"input":"x"}\n',
            capture_output=True,
            text=True,
            check=True,
        )
        lines = done.stdout.splitlines()
        self.assertEqual([json.loads(l) for l in lines], [{"hello": "outlast", "protocol": 1}, {"id": 1, "output": "x"}])
        self.assertIn("noise x", done.stderr)


if __name__ == "__main__":
    unittest.main()

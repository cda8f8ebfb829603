"""The talk's square and cube, four ways, in Python: the transcripts the
guide's "Futures by hand" chapter shows beside `coop byhand --step N`.

Each step is a REPL session: the lines after `>>>` are typed into a real
Python interpreter (code.InteractiveConsole) and everything else is what
Python printed. Regenerate the files (it takes about 30 s of real sleeping):

    python3 docs/talk/byhand.py docs/src/talk

`TALK_SPEED=20` divides every sleep by 20 and multiplies the measured times
back, as `coop byhand --speed` does; the guide's tests use it to check that
the files are still what Python prints (crates/coop/tests/cli/guide.rs).

Written for this guide from the talk's description, not copied from it.
"""

import asyncio
import code
import contextlib
import io
import os
import pathlib
import sys
import textwrap
import time

COMMON = '''
import asyncio, time, types

def timed(run):
    start = time.monotonic()
    result = run()
    print(f"elapsed: {(time.monotonic() - start) * SPEED:.1f} s")
    return result
'''

# Every sleep divided by TALK_SPEED (default 1: the talk's real seconds).
# The modules are shared by every step, so the real sleeps are kept here,
# once, and each step's patch wraps those.
SPEEDUP = '''
time.sleep = lambda seconds: REAL_SLEEP(seconds / SPEED)
asyncio.sleep = lambda seconds: REAL_ASLEEP(seconds / SPEED)
'''
REAL = {"REAL_SLEEP": time.sleep, "REAL_ASLEEP": asyncio.sleep}

STEPS = {
    1: (
        '''
        def square(x):
            print(f"Starting square with argument {x}!")
            time.sleep(3)
            print(f"Finishing square with argument {x}!")
            return x * x

        def cube(x):
            print(f"Starting cube with argument {x}!")
            time.sleep(3)
            y = square(x)
            print(f"Finishing cube with argument {x}!")
            return x * y
        ''',
        ["timed(lambda: (cube(2), square(3)))"],
    ),
    2: (
        '''
        async def square(x):
            print(f"Starting square with argument {x}!")
            time.sleep(3)
            print(f"Finishing square with argument {x}!")
            return x * x

        async def cube(x):
            print(f"Starting cube with argument {x}!")
            time.sleep(3)
            y = await square(x)
            print(f"Finishing cube with argument {x}!")
            return x * y

        async def both():
            return await asyncio.gather(cube(2), square(3))
        ''',
        ["timed(lambda: asyncio.run(both()))"],
    ),
    3: (
        '''
        @types.coroutine
        def manual_sleep(n):
            yield f"Please do not continue until {n} seconds have elapsed."

        async def square(x):
            print(f"Starting square with argument {x}!")
            await manual_sleep(3)
            print(f"Finishing square with argument {x}!")
            return x * x

        async def cube(x):
            print(f"Starting cube with argument {x}!")
            await manual_sleep(3)
            y = await square(x)
            print(f"Finishing cube with argument {x}!")
            return x * y
        ''',
        [
            "c = cube(2)",
            "s = square(3)",
            "c.send(None)",
            "s.send(None)",
            "c.send(None)",
            "s.send(None)",
            "c.send(None)",
        ],
    ),
    4: (
        '''
        async def square(x):
            print(f"Starting square with argument {x}!")
            await asyncio.sleep(3)
            print(f"Finishing square with argument {x}!")
            return x * x

        async def cube(x):
            print(f"Starting cube with argument {x}!")
            await asyncio.sleep(3)
            y = await square(x)
            print(f"Finishing cube with argument {x}!")
            return x * y

        async def both():
            return await asyncio.gather(cube(2), square(3))
        ''',
        ["timed(lambda: asyncio.run(both()))"],
    ),
}


class Console(code.InteractiveConsole):
    """Tracebacks without file names, as a REPL shows them."""

    def showtraceback(self):
        kind, value, _ = sys.exc_info()
        self.write("Traceback (most recent call last):\n")
        self.write('  File "<stdin>", line 1, in <module>\n')
        self.write(f"{kind.__name__}: {value}\n")


def transcript(step):
    definitions, typed = STEPS[step]
    speed = float(os.environ.get("TALK_SPEED", "1"))
    console = Console(locals={"SPEED": speed, **REAL})
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        console.runsource(COMMON, symbol="exec")
        console.runsource(SPEEDUP, symbol="exec")
        console.runsource(textwrap.dedent(definitions), symbol="exec")
        for line in typed:
            print(f">>> {line}")
            console.push(line)
    return out.getvalue()


if __name__ == "__main__":
    target = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "docs/src/talk")
    target.mkdir(parents=True, exist_ok=True)
    for step in STEPS:
        (target / f"byhand-step{step}.txt").write_text(transcript(step))

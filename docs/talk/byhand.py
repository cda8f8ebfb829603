"""The talk's square and cube, four ways, in Python: the transcripts the
guide's "Futures by hand" chapter shows beside `coop byhand --step N`.

Each step is a REPL session: the lines after `>>>` are typed into a real
Python interpreter (code.InteractiveConsole) and everything else is what
Python printed. Regenerate the files (it takes about 30 s of real sleeping):

    python3 docs/talk/byhand.py docs/src/talk

Written for this guide from the talk's description, not copied from it.
"""

import code
import contextlib
import io
import pathlib
import sys
import textwrap

COMMON = '''
import asyncio, time, types

def timed(run):
    start = time.monotonic()
    result = run()
    print(f"elapsed: {time.monotonic() - start:.1f} s")
    return result
'''

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
    console = Console()
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        console.runsource(COMMON, symbol="exec")
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

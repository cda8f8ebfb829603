"""The talk's concurrent client, written in aiohttp for coop's benchmarks: one
session, every request started at once, answers printed in input order.

    python3 gather_client.py BASE_URL NAME...    (names may repeat)
"""
import asyncio
import sys

import aiohttp


async def ask(session, base, name):
    async with session.get(f"{base}/{name}") as response:
        response.raise_for_status()
        sound = await response.text()
    return f'The {name} says "{sound}".'


async def run(base, names):
    # No cap on connections: every request in flight at once, as gather means.
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:
        answers = await asyncio.gather(*(ask(session, base, name) for name in names))
    print("\n".join(answers))


if __name__ == "__main__":
    asyncio.run(run(sys.argv[1].rstrip("/"), sys.argv[2:]))

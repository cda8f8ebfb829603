"""The talk's Animals API, written in aiohttp for coop's benchmarks: the same
twelve animals, a fixed delay per known animal, the talk's 404 text.

    python3 farm.py PORT [DELAY_SECONDS]     (default delay: 5)
"""
import asyncio
import sys

from aiohttp import web

ANIMALS = dict(
    cow="Moo!", pig="Oink!", sheep="Baaa!", chicken="Cluck!", bird="Tweet!",
    duck="Quack!", dog="Woof!", cat="Meow!", frog="Ribbit!", horse="Neigh!",
    turkey="Gobble-Gobble!", rooster="Cock-a-Doodle-Doo!",
)


def main(port, delay):
    async def welcome(_request):
        return web.Response(text="Welcome to the farm!")

    async def animal(request):
        name = request.match_info["name"]
        sound = ANIMALS.get(name)
        if sound is None:
            return web.Response(status=404, text=f"The animal {name} was not found.")
        await asyncio.sleep(delay)
        return web.Response(text=sound)

    app = web.Application()
    app.add_routes([web.get("/animals", welcome), web.get("/animals/{name}", animal)])
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


if __name__ == "__main__":
    main(int(sys.argv[1]), float(sys.argv[2]) if len(sys.argv) > 2 else 5.0)

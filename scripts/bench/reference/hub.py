"""The talk's pub/sub hub, written in aiohttp for coop's benchmarks: every open
stream registers an unbounded asyncio.Queue; a publish puts the message on
each of them; a stream writes each message followed by CRLF.

    python3 hub.py PORT
      GET  /   a text/plain stream
      POST /   publishes the body (or ?msg=), answers "ok"
"""
import asyncio
import sys

from aiohttp import web


def main(port):
    queues = set()

    async def stream(request):
        response = web.StreamResponse(headers={"Content-Type": "text/plain"})
        await response.prepare(request)
        mine = asyncio.Queue()
        queues.add(mine)
        try:
            while True:
                message = await mine.get()
                await response.write(message.encode() + b"\r\n")
        finally:
            queues.discard(mine)

    async def publish(request):
        message = request.query.get("msg")
        if message is None:
            message = await request.text()
        for queue in queues:
            queue.put_nowait(message)
        return web.Response(text="ok")

    app = web.Application()
    app.add_routes([web.get("/", stream), web.post("/", publish)])
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


if __name__ == "__main__":
    main(int(sys.argv[1]))

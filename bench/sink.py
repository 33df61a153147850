"""A counting aiosmtpd sink, for machines without postfix's smtp-sink: `python sink.py PORT`.

It accepts every message and keeps nothing. Python on the same cores as the pipeline: it
costs far more CPU per message than smtp-sink, so figures against it are lower.
"""

import asyncio
import sys

from aiosmtpd.controller import Controller


class Counter:
    def __init__(self) -> None:
        self.messages = 0

    async def handle_DATA(self, server, session, envelope) -> str:  # noqa: ANN001
        self.messages += 1
        return "250 OK"


async def main(port: int) -> None:
    controller = Controller(Counter(), hostname="127.0.0.1", port=port)
    controller.start()
    try:
        await asyncio.Event().wait()
    finally:
        controller.stop()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1])))

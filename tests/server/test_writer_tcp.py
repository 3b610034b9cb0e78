"""The writer's TCP listener (what a cluster's servers reach): a connection must open with the
cluster's token; one that does not, or sends something else, is closed before any write."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import yaml

from server.cluster.client import WriterClient, WriterUnavailable
from server.config import load_config
from server.writer.service import WriterService

TOKEN = "cluster-token-0123456789abcdef"


def test_only_the_token_opens_the_writer_over_tcp(tmp_path: Path) -> None:
    path = tmp_path / "reqo.yaml"
    path.write_text(yaml.safe_dump({"data_dir": "data", "databases": {"shop": {"token": "t"}}}))
    config = load_config(path)
    config.check_data_dir()

    async def scenario() -> None:
        service = WriterService(config, ["shop"], token=TOKEN)
        service.open()
        address = await service.listen_tcp("127.0.0.1", 0)
        try:
            write = {"calls": [{"op": "add item", "args": {"itemId": "i1"}, "params": {}}]}
            for wrong in ("", "not-the-token", TOKEN[:-1]):
                intruder = WriterClient(address, token=wrong, wait=0.2)
                with pytest.raises(WriterUnavailable, match="went away"):
                    await intruder.write("shop", "calls", write)
                await intruder.close()
            # No hello at all: the first frame, a write, closes the connection unanswered.
            silent = WriterClient(address, wait=0.2)
            with pytest.raises(WriterUnavailable, match="went away"):
                await silent.seq("shop")
            await silent.close()
            member = WriterClient(address, token=TOKEN)
            assert await member.seq("shop") == 0  # nothing was written by the others
            _, seq = await member.write("shop", "calls", write)
            assert seq == 1
            await member.close()
        finally:
            await asyncio.to_thread(service.close)

    asyncio.run(scenario())

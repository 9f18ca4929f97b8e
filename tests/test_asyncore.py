"""The dispatcher's own API, apart from what the engine does with it.

What the engine does with a dispatcher is tested by feature:
tests/test_engine_registration.py (registration and interest),
tests/test_engine_delivery.py (handlers, errors, the peer's close),
tests/test_engine_map_loop.py (the map loop's life), tests/test_accept_pause.py,
and the model-based tests/test_loop_model.py.
"""

from __future__ import annotations

import socket
from typing import Any, Dict, Tuple

import pytest

from asyncio_compat import asyncore

pytestmark = pytest.mark.timeout(60)


def test_close_closes_the_socket_even_when_del_channel_raises(
    socket_map: Dict[int, Any], pair: Tuple[socket.socket, socket.socket]
) -> None:
    class Failing(asyncore.dispatcher):
        def del_channel(self, map: Any = None) -> None:
            super().del_channel(map)
            raise RuntimeError("del_channel failed")

    channel = Failing(pair[0], socket_map)
    with pytest.raises(RuntimeError, match="del_channel failed"):
        channel.close()
    assert pair[0].fileno() == -1 and not socket_map

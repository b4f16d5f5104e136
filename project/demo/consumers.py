"""The demo's websocket: ``/ws/context/`` echoes each message with the bound context."""

from __future__ import annotations

from typing import Any

from channels.generic.websocket import AsyncJsonWebsocketConsumer

from tenancy import get_full_context


class ContextEchoConsumer(AsyncJsonWebsocketConsumer):
    """Say which context the connection is bound to, then echo each message with it."""

    async def connect(self) -> None:
        await self.accept()
        await self.send_json({"context": get_full_context()})

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        await self.send_json({"echo": content, "context": get_full_context()})

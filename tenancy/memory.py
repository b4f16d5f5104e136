"""Conversation memory: the messages and collections of one agent's conversation in one tenant.

``ContextManager.get_instance(tenant_id, agent_id, conversation_id)`` returns the
same instance for the same ids, from a registry bounded by
``TENANCY["MEMORY_MAX_INSTANCES"]`` (least recently used instances are dropped
first). An instance holds ids only: the conversation lives in the tenant-scoped
models :class:`~tenancy.models.Conversation`, :class:`~tenancy.models.Message`
and :class:`~tenancy.models.ConversationCollection`, so it is shared by every
worker and survives restarts, and tenant B never sees tenant A's conversation,
even one with the same agent and conversation ids.

An instance may be used inside its tenant's block or outside any tenant (it
switches to its tenant itself); inside another tenant's block it refuses with
``TenantAccessDenied``. Message positions stay unique and in order under
concurrent writers: a process lock per conversation, a row lock on the
conversation (``SELECT ... FOR UPDATE``) and a retry when another process took
the position first.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from asgiref.sync import sync_to_async
from django.db import IntegrityError, transaction
from django.db.models import Max

from .conf import tenancy_settings
from .current import get_current_tenant_id
from .exceptions import TenantAccessDenied
from .ids import describe_rejected, is_valid_context_id, validate_tenant_id
from .registry import tenant_context

__all__ = ["ContextManager"]

_ROLE_MAX_LENGTH = 32
_ATTEMPTS = 20
# Striped locks: writers of one conversation in this process queue on one lock.
_STRIPES = [threading.Lock() for _ in range(64)]

Key = tuple[str, str, str, str, str]


def _context_id(value: Any, what: str) -> str:
    if not is_valid_context_id(value):
        raise ValueError(
            f"Invalid {what} ({describe_rejected(value)}): 1 to 128 characters, letters, "
            "digits and '.', '_', ':', '-', starting with a letter or digit."
        )
    return value


def _optional(value: Any, what: str) -> str:
    text = "" if value is None else str(value)
    if len(text) > 255:
        raise ValueError(f"A {what} is at most 255 characters (got {len(text)}).")
    return text


def _split(message: Any) -> tuple[str, str, dict[str, Any]]:
    """Return (role, content, other keys) of a message dict, or raise before anything is stored."""
    if not isinstance(message, Mapping):
        raise TypeError("A message is a dict, like {'role': 'user', 'content': 'Hello'}.")
    data = dict(message)
    role = data.pop("role", "") or ""
    if not isinstance(role, str) or len(role) > _ROLE_MAX_LENGTH:
        raise ValueError(f"A message role is a string of at most {_ROLE_MAX_LENGTH} characters.")
    content = data.pop("content", "")
    if not isinstance(content, str):
        data["content"] = content  # structured content (parts, tool calls) is kept as JSON
        content = ""
    data.pop("message_id", None)  # ours, returned by add_message()
    try:
        text = json.dumps(data, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"A message must be JSON-serialisable ({exc}).") from None
    # PostgreSQL stores no NUL character, in text or in jsonb: refuse it on every database.
    if "\x00" in role or "\x00" in content or "\\u0000" in text:
        raise ValueError("A message cannot contain NUL characters.")
    return role, content, data


class ContextManager:
    """Memory of one conversation: ``(tenant_id, agent_id, conversation_id)``.

    Get instances with :meth:`get_instance`; the async methods read and write
    the database off the event loop.
    """

    _registry: OrderedDict[Key, ContextManager] = OrderedDict()
    _registry_lock = threading.Lock()

    def __init__(
        self,
        tenant_id: str,
        agent_id: str,
        conversation_id: str,
        user_id: Any = None,
        session_id: Any = None,
    ) -> None:
        self.tenant_id = validate_tenant_id(tenant_id)
        self.agent_id = _context_id(agent_id, "agent id")
        self.conversation_id = _context_id(conversation_id, "conversation id")
        self.user_id = _optional(user_id, "user id")
        self.session_id = _optional(session_id, "session id")
        self._conversation_pk: int | None = None
        self._lock = _STRIPES[hash((self.tenant_id, self.agent_id, self.conversation_id)) % 64]

    def __repr__(self) -> str:
        return (
            f"ContextManager(tenant_id={self.tenant_id!r}, agent_id={self.agent_id!r}, "
            f"conversation_id={self.conversation_id!r})"
        )

    @property
    def key(self) -> Key:
        return (self.tenant_id, self.agent_id, self.conversation_id, self.user_id, self.session_id)

    # -- the registry -------------------------------------------------------------

    @classmethod
    def get_instance(
        cls,
        tenant_id: str,
        agent_id: str,
        conversation_id: str,
        user_id: Any = None,
        session_id: Any = None,
    ) -> ContextManager:
        """Return the instance for these ids, the same one each time while it is registered.

        Raises ``InvalidTenantIdError`` or ``ValueError`` for malformed ids and
        ``TenantAccessDenied`` when another tenant is bound.
        """
        candidate = cls(tenant_id, agent_id, conversation_id, user_id, session_id)
        candidate._check_tenant()
        limit = tenancy_settings.MEMORY_MAX_INSTANCES
        with cls._registry_lock:
            instance = cls._registry.setdefault(candidate.key, candidate)
            cls._registry.move_to_end(candidate.key)
            while len(cls._registry) > limit:
                cls._registry.popitem(last=False)
        return instance

    @classmethod
    def forget_tenant(cls, tenant_id: str, using: str = "default") -> None:
        """Release every instance of *tenant_id* once the transaction on *using* commits.

        Called for ``tenant_unregistering``: the tenant's conversations are
        deleted with it (``deleted_with_tenant``), so no instance may keep
        pointing at them. Instances in other processes find their row gone and
        start a new conversation, in the tenant then registered.
        """

        def release() -> None:
            with cls._registry_lock:
                for key in [key for key in cls._registry if key[0] == tenant_id]:
                    instance = cls._registry.pop(key)
                    instance._conversation_pk = None

        transaction.on_commit(release, using=using)

    def clear(self) -> None:
        """Release this instance from the registry; the conversation stays in the database."""
        with self._registry_lock:
            if self._registry.get(self.key) is self:
                del self._registry[self.key]
        self._conversation_pk = None

    # -- the tenant ------------------------------------------------------------------

    def _check_tenant(self) -> str | None:
        current = get_current_tenant_id()
        if current is not None and current != self.tenant_id:
            raise TenantAccessDenied(
                f"This conversation belongs to tenant {self.tenant_id!r}; it cannot be used "
                f"in tenant {current!r}."
            )
        return current

    @contextmanager
    def _in_tenant(self) -> Iterator[None]:
        if self._check_tenant() is not None:
            yield
            return
        with tenant_context.switch(self.tenant_id):
            yield

    def _check_owner(self, owner: str) -> None:
        """Refuse a conversation started by another user (when both users are known)."""
        if owner and self.user_id and owner != self.user_id:
            raise TenantAccessDenied(
                "This conversation belongs to another user; start a new conversation id."
            )

    def _read_check(self) -> None:
        from .models import Conversation

        if self.user_id:
            owner = (
                Conversation.objects.filter(
                    agent_id=self.agent_id, conversation_id=self.conversation_id
                )
                .values_list("user_id", flat=True)
                .first()
            )
            self._check_owner(owner or "")

    def _messages(self) -> Any:
        from .models import Message

        self._read_check()
        return Message.objects.filter(
            conversation__agent_id=self.agent_id,
            conversation__conversation_id=self.conversation_id,
        )

    # -- messages ------------------------------------------------------------------------

    def _conversation(self) -> Any:
        """Return this conversation's row, locked until the transaction ends (created if new)."""
        from .models import Conversation

        for _attempt in range(2):  # a second time if the row was deleted since we saw it
            if self._conversation_pk is None:
                row, _ = Conversation.objects.get_or_create(
                    agent_id=self.agent_id,
                    conversation_id=self.conversation_id,
                    defaults={"user_id": self.user_id, "session_id": self.session_id},
                )
                self._conversation_pk = row.pk
            locked = Conversation.objects.select_for_update().filter(pk=self._conversation_pk)
            row = locked.first()
            if row is not None:
                self._check_owner(row.user_id)
                return row
            self._conversation_pk = None
        raise RuntimeError(f"The conversation of {self!r} was deleted while in use.")

    def add_message_sync(self, message: Mapping[str, Any]) -> str:
        """Append *message* to the conversation and return its id (the sync twin)."""
        from .models import Message

        role, content, data = _split(message)
        message_id = uuid.uuid4().hex
        with self._in_tenant(), self._lock:
            for _attempt in range(_ATTEMPTS):
                try:
                    with transaction.atomic():
                        conversation = self._conversation()
                        messages = Message.objects.filter(conversation=conversation)
                        last = messages.aggregate(last=Max("position"))["last"]
                        Message.objects.create(
                            conversation=conversation,
                            message_id=message_id,
                            position=0 if last is None else last + 1,
                            role=role,
                            content=content,
                            data=data,
                        )
                    return message_id
                except IntegrityError:
                    continue  # another process took this position: read the end again
        raise RuntimeError(f"Could not append to {self!r} after {_ATTEMPTS} attempts.")

    async def add_message(self, message: Mapping[str, Any]) -> str:
        """Append *message* (``role``, ``content`` and any JSON keys) and return its id."""
        return await sync_to_async(self.add_message_sync)(message)

    def get_conversation_history_sync(self, limit: int | None = None) -> list[dict[str, Any]]:
        """Return the messages in order, the last *limit* ones if given (the sync twin)."""
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int)):
            raise TypeError("limit is a number of messages, or None for all of them.")
        with self._in_tenant():
            messages = self._messages()
            if limit is not None:
                rows = list(reversed(messages.order_by("-position")[: max(limit, 0)]))
            else:
                rows = list(messages.order_by("position"))
        history = []
        for row in rows:
            item: dict[str, Any] = {"role": row.role, "content": row.content, **row.data}
            item["message_id"] = row.message_id
            item["created_at"] = row.created_at.isoformat()
            history.append(item)
        return history

    async def get_conversation_history(self, limit: int | None = None) -> list[dict[str, Any]]:
        """Return the messages as dicts, oldest first (the last *limit* ones if given)."""
        return await sync_to_async(self.get_conversation_history_sync)(limit)

    # -- collections ------------------------------------------------------------------------

    def register_collection_sync(self, collection_id: str) -> None:
        """Record that the conversation used *collection_id* (idempotent; the sync twin)."""
        from .models import ConversationCollection

        collection_id = _context_id(collection_id, "collection id")
        with self._in_tenant(), self._lock, transaction.atomic():
            ConversationCollection.objects.get_or_create(
                conversation=self._conversation(), collection_id=collection_id
            )

    async def register_collection(self, collection_id: str) -> None:
        """Record that the conversation used *collection_id*; registering twice is harmless."""
        await sync_to_async(self.register_collection_sync)(collection_id)

    def get_collections_sync(self) -> list[str]:
        """Return the registered collection ids, in registration order (the sync twin)."""
        from .models import ConversationCollection

        with self._in_tenant():
            self._read_check()
            rows = ConversationCollection.objects.filter(
                conversation__agent_id=self.agent_id,
                conversation__conversation_id=self.conversation_id,
            ).order_by("created_at", "pk")
            return list(rows.values_list("collection_id", flat=True))

    async def get_collections(self) -> list[str]:
        """Return the registered collection ids, in registration order."""
        return await sync_to_async(self.get_collections_sync)()

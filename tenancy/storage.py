"""Tenant-scoped file storage: each tenant's files under a prefix of its own.

:class:`TenantStorageMixin` goes in front of any Django ``Storage`` class
(``class TenantS3Storage(TenantStorageMixin, S3Storage)``);
:class:`TenantFileSystemStorage` is the mixin on ``FileSystemStorage``. Names
stay relative to the tenant (``save("report.pdf")`` returns ``"report.pdf"``)
and are stored under ``<tenants_dir>/<tenant_id>/``. Every operation needs a
registered tenant bound (``TenantRequiredError`` otherwise), and a name that
could leave the tenant's prefix (``..``, an absolute path, a backslash, an
encoded separator, a control character, and on a local file system a symlink
leading out) raises :class:`~tenancy.exceptions.UnsafeFileNameError`.

``FileField`` and ``ImageField`` of ``TenantScopedModel`` subclasses that do
not name a storage use :func:`tenant_default_storage`: the ``default`` storage
of ``STORAGES`` with the mixin in front.
"""

from __future__ import annotations

import os
import re
from contextvars import ContextVar
from typing import Any
from urllib.parse import unquote

from django.conf import settings
from django.core.files.storage import FileSystemStorage, Storage, default_storage
from django.core.signals import setting_changed
from django.db.models import FileField
from django.db.models.fields.files import FieldFile, ImageFieldFile
from django.utils.functional import LazyObject, empty
from django.utils.module_loading import import_string

from .exceptions import UnsafeFileNameError
from .guards import row_tenant_bound
from .ids import describe_rejected
from .registry import require_tenant_id

__all__ = [
    "TenantFieldFile",
    "TenantFileSystemStorage",
    "TenantImageFieldFile",
    "TenantStorageMixin",
    "clean_name",
    "tenant_default_storage",
    "tenant_storage_class",
    "use_tenant_storage",
]

_DRIVE = re.compile(r"[A-Za-z]:")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# True while a translated call runs: the base class's own calls (save() calling
# exists(), _save() calling path()) already carry the tenant's prefix.
_INSIDE: ContextVar[bool] = ContextVar("tenancy_storage_inside", default=False)


def _refuse(reason: str, name: object) -> UnsafeFileNameError:
    return UnsafeFileNameError(
        f"Refused a file name: {reason} ({describe_rejected(name)}). "
        "Use a relative path such as 'invoices/2024/03.pdf'."
    )


def clean_name(name: object, *, allow_empty: bool = False) -> str:
    """Return *name* as a plain relative path, or raise ``UnsafeFileNameError``.

    Refused: non-strings, ``..`` components, absolute paths (``/x``, ``C:x``),
    backslashes, control characters, and percent-encoded forms of any of them
    (``%2e%2e%2f``, ``%252f``). Empty and ``.`` components are dropped.
    """
    if not isinstance(name, str):
        raise _refuse("not a string", name)
    decoded = name
    for _ in range(4):  # %252f is %2f once decoded, / twice
        once = unquote(decoded)
        if once == decoded:
            break
        decoded = once
    for form in (name, decoded):
        if "\\" in form:
            raise _refuse("a backslash", name)
        if _CONTROL.search(form):
            raise _refuse("a control character", name)
        if form.startswith("/") or _DRIVE.match(form):
            raise _refuse("an absolute path", name)
        if ".." in form.split("/"):
            raise _refuse("a '..' component", name)
    if decoded.count("/") != name.count("/"):
        raise _refuse("an encoded separator", name)
    parts = [part for part in name.split("/") if part not in ("", ".")]
    if not parts and not allow_empty:
        raise _refuse("an empty name", name)
    return "/".join(parts)


def _translated(method: str, *, returns_name: bool = False, allow_empty: bool = False) -> Any:
    def call(self: TenantStorageMixin, name: Any, *args: Any, **kwargs: Any) -> Any:
        base = getattr(super(TenantStorageMixin, self), method)
        if _INSIDE.get():
            return base(name, *args, **kwargs)
        directory, full = self.tenant_name(name, allow_empty=allow_empty)
        token = _INSIDE.set(True)
        try:
            result = base(full, *args, **kwargs)
        finally:
            _INSIDE.reset(token)
        if returns_name:
            if not result.startswith(directory + "/"):
                raise _refuse(f"the storage returned a name outside {directory}/", result)
            result = result[len(directory) + 1 :]
        return result

    call.__name__ = method
    call.__doc__ = f"``{method}()`` of the base storage, in the bound tenant's directory."
    return call


class TenantStorageMixin:
    """Put in front of a ``Storage`` class: names live under ``<tenants_dir>/<tenant_id>/``.

    ``save``, ``open``, ``exists``, ``delete``, ``url``, ``listdir``, ``size``,
    ``path``, ``get_available_name`` and the ``get_*_time`` methods take and
    return names relative to the bound tenant; they raise
    ``TenantRequiredError`` with no tenant bound and ``UnsafeFileNameError`` for
    a name that could leave its directory.
    """

    #: The directory holding one directory per tenant ("" puts them at the root).
    tenants_dir = "tenants"

    def __init__(self, *args: Any, tenants_dir: str | None = None, **kwargs: Any) -> None:
        if tenants_dir is not None:
            self.tenants_dir = clean_name(tenants_dir, allow_empty=True)
        token = _INSIDE.set(True)  # what the base's __init__ calls is its own business
        try:
            super().__init__(*args, **kwargs)
        finally:
            _INSIDE.reset(token)

    def tenant_directory(self, tenant_id: str) -> str:
        """Return the directory (a storage name) of *tenant_id*'s files."""
        return f"{self.tenants_dir}/{tenant_id}" if self.tenants_dir else tenant_id

    def tenant_name(self, name: object, *, allow_empty: bool = False) -> tuple[str, str]:
        """Return the bound tenant's directory and *name* inside it, after every check."""
        directory = self.tenant_directory(require_tenant_id())
        relative = clean_name(name, allow_empty=allow_empty)
        full = f"{directory}/{relative}" if relative else directory
        if isinstance(self, FileSystemStorage):
            self._check_resolved(directory, full)
        return directory, full

    def _check_resolved(self, directory: str, full: str) -> None:
        """Refuse a path whose symlinks lead out of the tenant's directory."""
        assert isinstance(self, FileSystemStorage)
        base = os.path.realpath(self.location)
        root = os.path.join(base, *directory.split("/"))
        real = os.path.realpath(os.path.join(base, *full.split("/")))
        if real != root and not real.startswith(root + os.sep):
            raise _refuse("a symlink leading out of the tenant's directory", full)

    save = _translated("save", returns_name=True)
    get_available_name = _translated("get_available_name", returns_name=True)
    open = _translated("open")
    exists = _translated("exists")
    delete = _translated("delete")
    url = _translated("url")
    listdir = _translated("listdir", allow_empty=True)
    size = _translated("size")
    path = _translated("path")
    get_accessed_time = _translated("get_accessed_time")
    get_created_time = _translated("get_created_time")
    get_modified_time = _translated("get_modified_time")


class TenantFileSystemStorage(TenantStorageMixin, FileSystemStorage):
    """``FileSystemStorage`` with each tenant's files under ``<location>/tenants/<tenant_id>/``.

    Symlinks are resolved: a path that leads out of the tenant's directory is refused.
    """


_CLASSES: dict[type, type] = {FileSystemStorage: TenantFileSystemStorage}


def tenant_storage_class(cls: type[Storage]) -> type[Storage]:
    """Return *cls* with :class:`TenantStorageMixin` in front (*cls* itself if it has it)."""
    if issubclass(cls, TenantStorageMixin):
        return cls
    scoped = _CLASSES.get(cls)
    if scoped is None:
        scoped = _CLASSES[cls] = type(f"Tenant{cls.__name__}", (TenantStorageMixin, cls), {})
    return scoped


class _TenantDefaultStorage(LazyObject):
    """``STORAGES["default"]`` made tenant-scoped, built on first use and after settings change."""

    def _setup(self) -> None:
        config = settings.STORAGES["default"]
        cls = tenant_storage_class(import_string(config["BACKEND"]))
        self._wrapped = cls(**config.get("OPTIONS", {}))


_default: Any = _TenantDefaultStorage()


def _forget_default(*, setting: str, **kwargs: Any) -> None:
    if setting in ("STORAGES", "MEDIA_ROOT", "MEDIA_URL"):
        _default._wrapped = empty


setting_changed.connect(_forget_default, dispatch_uid="tenancy.storage.default")


def tenant_default_storage() -> Storage:
    """Return the tenant-scoped ``default`` storage (the storage of scoped models' files).

    A callable, so a ``FileField(storage=tenant_default_storage)`` in a migration
    names this function rather than a storage object.
    """
    return _default


class _RowTenantFile:
    """A scoped row's file, reached in the row's tenant when none is bound (the admin).

    With a tenant bound, that tenant's directory is used, as for any storage call:
    a row read through ``unscoped`` in another tenant never opens this one's files.
    """

    instance: Any

    @property
    def url(self) -> str:
        with row_tenant_bound(self.instance):
            return super().url  # type: ignore[misc]

    @property
    def path(self) -> str:
        with row_tenant_bound(self.instance):
            return super().path  # type: ignore[misc]

    @property
    def size(self) -> int:
        with row_tenant_bound(self.instance):
            return super().size  # type: ignore[misc]

    def open(self, *args: Any, **kwargs: Any) -> Any:
        with row_tenant_bound(self.instance):
            return super().open(*args, **kwargs)  # type: ignore[misc]

    def save(self, name: str, content: Any, save: bool = True) -> None:
        with row_tenant_bound(self.instance):
            super().save(name, content, save)  # type: ignore[misc]

    def delete(self, save: bool = True) -> None:
        with row_tenant_bound(self.instance):
            super().delete(save)  # type: ignore[misc]


class TenantFieldFile(_RowTenantFile, FieldFile):
    """The ``FieldFile`` of scoped models' ``FileField``s."""


class TenantImageFieldFile(_RowTenantFile, ImageFieldFile):
    """The ``ImageFieldFile`` of scoped models' ``ImageField``s."""


_FILE_CLASSES = {FieldFile: TenantFieldFile, ImageFieldFile: TenantImageFieldFile}


def use_tenant_storage(model: Any) -> None:
    """Give *model*'s file fields that use the default storage the tenant-scoped one.

    Their files are then reached in the row's tenant when no tenant is bound
    (:class:`TenantFieldFile`), so the admin shows and serves them.
    """
    for field in model._meta.local_fields:
        if isinstance(field, FileField) and field.storage is default_storage:
            field.storage = _default
            field._storage_callable = tenant_default_storage  # type: ignore[attr-defined]
            field.attr_class = _FILE_CLASSES.get(field.attr_class, field.attr_class)

"""tenancy.storage: each tenant's files under its own prefix; no name reaches another's."""

from __future__ import annotations

import os

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import FileSystemStorage, InMemoryStorage
from django.test import override_settings

import tenancy
from tenancy.exceptions import TenantRequiredError, UnsafeFileNameError
from tenancy.storage import (
    TenantFileSystemStorage,
    TenantStorageMixin,
    clean_name,
    tenant_default_storage,
    tenant_storage_class,
)
from tests.testapp.models import Attachment


@pytest.fixture
def media(tmp_path):
    root = tmp_path / "media"
    root.mkdir()
    with override_settings(MEDIA_ROOT=str(root), MEDIA_URL="/media/"):
        yield root


@pytest.fixture
def storage(media):
    return TenantFileSystemStorage()


TRAVERSALS = [
    "../globex/secret.txt",
    "a/../../globex/secret.txt",
    "..",
    "/etc/passwd",
    "/tenants/globex/secret.txt",
    "C:/Windows/win.ini",
    "c:secret.txt",
    "..\\globex\\secret.txt",
    "a\\b.txt",
    "%2e%2e/globex/secret.txt",
    "..%2fglobex%2fsecret.txt",
    "a%2f..%2f..%2fglobex",
    "%252e%252e%252fglobex",
    "%5c..%5cglobex",
    "secret.txt\x00.png",
    "line\nbreak.txt",
    "",
    "/",
]


@pytest.mark.parametrize("name", TRAVERSALS)
def test_each_traversal_attempt_is_refused_with_a_clear_error(storage, acme, name):
    with tenancy.switch("acme"):
        for call in (
            lambda: storage.save(name, ContentFile(b"x")),
            lambda: storage.open(name),
            lambda: storage.exists(name),
            lambda: storage.delete(name),
            lambda: storage.url(name),
            lambda: storage.size(name),
        ):
            with pytest.raises(UnsafeFileNameError) as caught:
                call()
            assert caught.value.code == "unsafe_file_name"
            assert caught.value.status_code == 400
            assert "Refused a file name" in caught.value.message
            if len(name) > 3:
                assert name not in caught.value.message  # never the raw value


def test_a_symlink_out_of_the_tenant_is_refused(storage, media, tenants):
    with tenancy.switch("globex"):
        storage.save("secret.txt", ContentFile(b"globex only"))
    with tenancy.switch("acme"):
        storage.save("keep.txt", ContentFile(b"acme"))
    acme_dir = media / "tenants" / "acme"
    os.symlink(media / "tenants" / "globex", acme_dir / "door")
    os.symlink(media / "tenants" / "globex" / "secret.txt", acme_dir / "secret.txt")
    with tenancy.switch("acme"):
        for name in ("door/secret.txt", "secret.txt"):
            with pytest.raises(UnsafeFileNameError, match="symlink"):
                storage.open(name)
            with pytest.raises(UnsafeFileNameError):
                storage.exists(name)
        with pytest.raises(UnsafeFileNameError):
            storage.save("door/new.txt", ContentFile(b"x"))
        assert storage.open("keep.txt").read() == b"acme"
    assert not (media / "tenants" / "globex" / "new.txt").exists()


def test_a_file_saved_in_one_tenant_is_not_found_from_another(storage, media, tenants):
    with tenancy.switch("acme"):
        name = storage.save("reports/q1.txt", ContentFile(b"acme numbers"))
        assert name == "reports/q1.txt"
        assert storage.exists(name)
        assert storage.url(name) == "/media/tenants/acme/reports/q1.txt"
        assert storage.listdir("reports") == ([], ["q1.txt"])
        assert storage.size(name) == len(b"acme numbers")
    assert (media / "tenants" / "acme" / "reports" / "q1.txt").read_bytes() == b"acme numbers"
    with tenancy.switch("globex"):
        assert not storage.exists("reports/q1.txt")
        with pytest.raises(FileNotFoundError):
            storage.open("reports/q1.txt")
        again = storage.save("reports/q1.txt", ContentFile(b"globex numbers"))
        assert again == "reports/q1.txt"  # no clash with acme's file: no renaming
        assert storage.open(again).read() == b"globex numbers"
    with tenancy.switch("acme"):
        assert storage.open("reports/q1.txt").read() == b"acme numbers"
        storage.delete("reports/q1.txt")
        assert not storage.exists("reports/q1.txt")
    with tenancy.switch("globex"):
        assert storage.exists("reports/q1.txt")


def test_a_second_save_under_one_name_gets_another_name_in_the_same_tenant(storage, acme):
    with tenancy.switch("acme"):
        first = storage.save("a.txt", ContentFile(b"1"))
        second = storage.save("a.txt", ContentFile(b"2"))
    assert first == "a.txt"
    assert second != "a.txt" and second.startswith("a_") and "/" not in second


def test_every_operation_refuses_without_a_tenant(storage, acme):
    for call in (
        lambda: storage.save("a.txt", ContentFile(b"x")),
        lambda: storage.open("a.txt"),
        lambda: storage.exists("a.txt"),
        lambda: storage.delete("a.txt"),
        lambda: storage.url("a.txt"),
        lambda: storage.listdir(""),
    ):
        with pytest.raises(TenantRequiredError):
            call()
    with tenancy.Context(tenant_id="default"):
        with pytest.raises(TenantRequiredError):
            storage.exists("a.txt")
    with tenancy.Context(tenant_id="ghost"), pytest.raises(tenancy.TenantNotRegisteredError):
        storage.exists("a.txt")


def test_the_mixin_works_on_any_storage(tenants):
    scoped = tenant_storage_class(InMemoryStorage)
    assert issubclass(scoped, TenantStorageMixin)
    assert tenant_storage_class(scoped) is scoped
    assert tenant_storage_class(FileSystemStorage) is TenantFileSystemStorage
    memory = scoped(tenants_dir="t")
    with tenancy.switch("acme"):
        assert memory.save("x.txt", ContentFile(b"acme")) == "x.txt"
        assert memory.listdir("") == ([], ["x.txt"])
        with pytest.raises(UnsafeFileNameError):
            memory.open("../globex/x.txt")
    with tenancy.switch("globex"):
        assert not memory.exists("x.txt")
        memory.save("y.txt", ContentFile(b"globex"))
        assert memory.listdir("") == ([], ["y.txt"])


def test_clean_name():
    assert clean_name("a//b/./c.txt") == "a/b/c.txt"
    assert clean_name("100%.txt") == "100%.txt"  # a percent sign alone is fine
    assert clean_name("", allow_empty=True) == ""


@pytest.mark.django_db
def test_a_scoped_models_file_field_round_trip(media, tenants):
    field = Attachment._meta.get_field("file")
    assert field.storage is tenant_default_storage()
    assert field.deconstruct()[3]["storage"] is tenant_default_storage
    with tenancy.switch("acme"):
        row = Attachment.objects.create(
            title="plan", file=ContentFile(b"acme plan", name="plan.txt")
        )
        assert row.file.name == "attachments/plan.txt"
        assert row.file.url == "/media/tenants/acme/attachments/plan.txt"
    assert (media / "tenants" / "acme" / "attachments" / "plan.txt").read_bytes() == b"acme plan"
    with tenancy.switch("globex"):
        assert not Attachment.objects.exists()
        other = Attachment.objects.create(
            title="plan", file=ContentFile(b"globex", name="plan.txt")
        )
        assert other.file.name == "attachments/plan.txt"
    with tenancy.switch("acme"):
        row = Attachment.objects.get()
        with row.file.open("rb") as handle:
            assert handle.read() == b"acme plan"
        row.file.delete(save=False)
    assert not (media / "tenants" / "acme" / "attachments" / "plan.txt").exists()
    assert (media / "tenants" / "globex" / "attachments" / "plan.txt").exists()
    # Outside any tenant (the admin), a row's file is reached in the row's tenant.
    globex_row = Attachment.unscoped.get(tenant_id="globex")
    assert globex_row.file.url == "/media/tenants/globex/attachments/plan.txt"
    with globex_row.file.open("rb") as handle:
        assert handle.read() == b"globex"
    assert tenancy.get_context() is None or not tenancy.get_context().variables
    # Inside another tenant, it never is: that tenant's directory is used.
    with tenancy.switch("acme"), pytest.raises(FileNotFoundError):
        Attachment.unscoped.get(tenant_id="globex").file.open("rb")
    with pytest.raises(TenantRequiredError):
        tenant_default_storage().open("attachments/plan.txt")


def test_default_storage_follows_settings(tmp_path, acme):
    with override_settings(
        STORAGES={
            "default": {"BACKEND": "django.core.files.storage.InMemoryStorage"},
            "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
        }
    ):
        storage = tenant_default_storage()
        with tenancy.switch("acme"):
            storage.save("m.txt", ContentFile(b"m"))
            assert isinstance(storage._wrapped, InMemoryStorage)
    assert not isinstance(tenant_default_storage()._wrapped, InMemoryStorage)

"""Tenant-scoped models used by the tests."""

from django.db import models

from tenancy.models import TenantScopedModel


class Project(TenantScopedModel):
    name = models.CharField(max_length=100)

    def __str__(self) -> str:
        return self.name


class Task(TenantScopedModel):
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="tasks")
    title = models.CharField(max_length=100)
    done = models.BooleanField(default=False)

    def __str__(self) -> str:
        return self.title


class Note(TenantScopedModel):
    """The model of docs/data.md's examples, as the docs show it."""

    title = models.CharField(max_length=200)

    class Meta(TenantScopedModel.Meta):
        ordering = ["title"]

    def __str__(self) -> str:
        return self.title


class Attachment(TenantScopedModel):
    """A scoped model with a plain FileField: its files are the tenant's (tenancy.storage)."""

    title = models.CharField(max_length=100)
    file = models.FileField(upload_to="attachments/")

    def __str__(self) -> str:
        return self.title

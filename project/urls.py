"""URLs of the demo project: a landing page, the admin, the demo API and the docs."""

from django.contrib import admin
from django.urls import include, path
from django.views.generic import TemplateView

from project.demo import docs

urlpatterns = [
    path("", TemplateView.as_view(template_name="index.html"), name="index"),
    path("admin/", admin.site.urls),
    path("api/", include("project.demo.urls")),
    path("docs/", docs.docs_index, name="docs"),
    path("docs/<str:name>", docs.docs_page, name="docs-page"),
]

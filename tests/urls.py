from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
    path("req/", include("tests.request_views")),
    path("outage/", include("tests.outage_views")),
]

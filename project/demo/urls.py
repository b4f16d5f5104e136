"""The demo API, and ``POST /api/token`` (username, password) for DRF's token of a demo user."""

from django.urls import include, path
from rest_framework.authtoken.views import obtain_auth_token
from rest_framework.routers import SimpleRouter

from . import notes, views

router = SimpleRouter()
router.register("notes", notes.NoteViewSet, basename="note")

urlpatterns = [
    path("token", obtain_auth_token, name="token"),
    path("public/status", views.PublicStatusView.as_view(), name="public-status"),
    path("context", views.ContextView.as_view(), name="context"),
    path("tasks/context-report", views.ContextReportView.as_view(), name="context-report"),
    path("agents/<str:agent_id>/chat", notes.AgentChatView.as_view(), name="agent-chat"),
    path("", include(router.urls)),
]

"""The portal's URLs plus one trivial DRF view, ``POST /bench/trivial/``: the same
middleware, token authentication and permission check as the API, then 202 with the
parsed body and no database write — the floor any API call stands on."""

from __future__ import annotations

from django.urls import path
from rest_framework.response import Response
from rest_framework.views import APIView

from portal.urls import urlpatterns as portal_urlpatterns


class TrivialView(APIView):
    """Authenticated JSON in, JSON back."""

    def post(self, request):
        return Response({"received": request.data}, status=202)


urlpatterns = [path("bench/trivial/", TrivialView.as_view()), *portal_urlpatterns]

from django.conf import settings
from django.contrib import admin
from django.urls import include, path

from config.api import api

handler404 = "config.api.page_not_found"  # JSON for unmatched API paths

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/v1/", api.urls),
    path("", include("portal.urls")),
]

if settings.BENCH_ENDPOINTS:
    from benchmarks.bare_api import bench_api

    urlpatterns.append(path("bench/", bench_api.urls))

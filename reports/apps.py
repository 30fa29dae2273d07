from django.apps import AppConfig


class ReportsConfig(AppConfig):
    name = "reports"

    def ready(self) -> None:
        # Register the tasks with the Celery app in every process, not only in workers: the
        # embedded default runs outbox messages in-process, where Celery's autodiscovery
        # (triggered by a worker starting) never happens.
        from reports import tasks  # noqa: F401

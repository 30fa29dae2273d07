from django.apps import AppConfig


class CaptableConfig(AppConfig):
    name = "captable"

"""Configuration of LangShazam (see settings.py)."""

from .settings import Settings, SettingsError, get_settings, load_settings

__all__ = ["Settings", "SettingsError", "get_settings", "load_settings"]

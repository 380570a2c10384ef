"""Who may use `/cyto` and its buttons: `CYTO_ALLOWED_USERS` and `CYTO_ALLOWED_CHANNELS` (empty
means anyone, in any channel the app is in). Pure."""

from __future__ import annotations

from dataclasses import dataclass

from bot.settings import Settings


@dataclass(frozen=True)
class Permissions:
    users: frozenset[str] = frozenset()
    channels: frozenset[str] = frozenset()

    @classmethod
    def from_settings(cls, settings: Settings) -> Permissions:
        return cls(settings.allowed_users, settings.allowed_channels)

    def refusal(self, user: str | None, channel: str | None) -> str | None:
        """Why `user` may not act in `channel`, or None when they may."""
        if self.users and user not in self.users:
            return ("You are not on this bot's list of people who may start, retry or cancel runs "
                    "(CYTO_ALLOWED_USERS); ask whoever runs cyto-bot to add you.")
        if self.channels and channel not in self.channels:
            where = ", ".join(f"<#{c}>" for c in sorted(self.channels))
            return f"`/cyto` works only in {where} (CYTO_ALLOWED_CHANNELS); try it there."
        return None

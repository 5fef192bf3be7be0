"""Keys as a terminal delivers them when they come faster than the app handles them (tmux
``send-keys``, a paste without brackets, typing over a slow ssh link): all queued at once, where
Pilot's ``press`` waits for the app to be idle after each key."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from textual import events
from textual.app import App
from textual.keys import _character_to_key


def key_event(key: str) -> events.Key:
    """The event a terminal's bytes give for ``key``: a character (``"a"``, ``"/"``, ``"\\t"``) or a
    key name (``"tab"``, ``"shift+tab"``, ``"ctrl+u"``)."""
    if key in ("\t", "tab"):
        return events.Key("tab", "\t")
    if len(key) == 1:
        return events.Key(key if key.isalnum() else _character_to_key(key), key)
    return events.Key(key, None)


def burst(app: App[Any], keys: Iterable[str]) -> int:
    """Queue every key of ``keys`` to ``app`` at once, as its driver does with one read of many
    keys; the count sent. A string's characters are keys; "\\t" is Tab."""
    driver = app._driver
    assert driver is not None
    sent = 0
    for key in keys:
        event = key_event(key)
        event.set_sender(app)
        driver.send_message(event)
        sent += 1
    return sent


def typed(*chunks: str | list[str]) -> list[str]:
    """Keys of ``chunks``: a string is typed character by character, a list holds key names."""
    keys: list[str] = []
    for chunk in chunks:
        keys.extend(chunk if isinstance(chunk, list) else list(chunk))
    return keys

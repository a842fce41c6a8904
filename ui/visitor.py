"""Who the visitor is, across reloads and new tabs of one browser, and what the server keeps for them.

A visitor is an unguessable token (`secrets.token_urlsafe(24)`: 192 random bits) made on the server and kept in
a cookie of that browser (path /, SameSite=Strict, 30 days), set by a one-line script the first time. Every later
page load of that browser sends the cookie back, and Streamlit hands it over (`st.context.cookies`): a reload
(F5) or a second tab is the same visitor. Another browser has no cookie and gets a token of its own: it sees
nothing of the first one's. Like a run id, the token is the only key; a cookie that is not of its form is ignored.

For each token the server keeps a `Locker` (in one server-wide `Lockers`): the visitor's models (trained or
uploaded), the active one, and the values a page remembers (`REMEMBERED`: the run and the study it showed, the
runs already collected). A new session of a known visitor starts from its locker. Lockers are bounded: one unseen
for `idle_s` goes, and beyond `most` the least recently seen go first.
"""
from __future__ import annotations

import re
import secrets
import threading
import time
from dataclasses import dataclass, field

import streamlit as st

COOKIE = "aelab_visitor"
TOKEN = re.compile(r"[A-Za-z0-9_-]{32}")      # what secrets.token_urlsafe(24) makes
COOKIE_DAYS = 30
KEY = "app.visitor"                            # this session's token, in session_state


@dataclass
class Locker:
    """What the server keeps for one visitor: their models (key -> checkpoint.ModelEntry, oldest first) and the
    session values pages remember (name -> value)."""
    models: dict = field(default_factory=dict)
    values: dict = field(default_factory=dict)
    seen: float = field(default_factory=time.monotonic)


class Lockers:
    """Every visitor's locker on this server, bounded by idle time and count; thread-safe."""

    def __init__(self, idle_s: float = 6 * 3600.0, most: int = 500):
        self.idle_s, self.most = idle_s, most
        self._lockers: dict[str, Locker] = {}
        self._lock = threading.Lock()

    def get(self, token: str) -> Locker:
        """The visitor's locker (a new empty one for a new visitor); marks it seen."""
        with self._lock:
            now = time.monotonic()
            locker = self._lockers.pop(token, None)
            if locker is None or now - locker.seen > self.idle_s:
                locker = Locker()
            self._sweep()                       # the others: idle ones go, and room is made for this one
            locker.seen = now
            self._lockers[token] = locker       # most recently seen last
            return locker

    def __len__(self) -> int:
        with self._lock:
            return len(self._lockers)

    def _sweep(self) -> None:
        now = time.monotonic()
        for token in [t for t, lk in self._lockers.items() if now - lk.seen > self.idle_s]:
            del self._lockers[token]
        while len(self._lockers) >= self.most:
            del self._lockers[next(iter(self._lockers))]


@st.cache_resource(show_spinner=False)
def lockers() -> Lockers:
    return Lockers()


def token() -> str:
    """This visitor's token: this session's, else the browser's cookie, else a new one (and the cookie is set)."""
    if KEY not in st.session_state:
        sent = _cookie()
        st.session_state[KEY] = sent if TOKEN.fullmatch(sent) else secrets.token_urlsafe(24)
        st.session_state[KEY + ".sent"] = sent == st.session_state[KEY]
    return st.session_state[KEY]


def keep_cookie() -> None:
    """Set the visitor's cookie in this browser when it did not send it (once per session)."""
    if st.session_state.get(KEY + ".sent", True):
        return
    st.session_state[KEY + ".sent"] = True
    st.html(f"<script>document.cookie = '{COOKIE}={token()}; path=/; max-age={COOKIE_DAYS * 86400}; "
            f"SameSite=Strict';</script>", unsafe_allow_javascript=True)


def locker() -> Locker:
    return lockers().get(token())


def _cookie() -> str:
    """The visitor cookie this browser sent, or "" (none, or no browser behind this session: a test's bare run)."""
    try:
        sent = st.context.cookies.get(COOKIE, "")
    except Exception:
        return ""
    return sent if isinstance(sent, str) else ""

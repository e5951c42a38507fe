"""Server polls that keep working when the server is slow: reply-driven tick chains.

A ``dcc.Interval`` fires on its period whether or not the previous poll has answered, and
Dash discards a reply once a newer request of the same callback has gone out. So when one
round trip takes longer than the period (a loaded 2-core server, a large figure), no reply is
ever applied: the view stalls while the server is asked again and again. A ``Poll`` asks
again only after the reply to its last tick has arrived: the server callback listens to the
poll's ``tick`` store and writes ``answer(...)`` to its ``reply`` store; a clientside callback
(assets/polls.js, ``wbPolls.next``) sets the next tick ``ms`` later while the reply says
there is more to fetch. A reply missing for a minute (a request lost) re-sends the tick.

A callback that starts work writes ``start()`` to the reply store. A poll that also runs on page
load (no prevent_initial_call) starts its chain with its first answer.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass

from dash import Input, Output, clientside_callback, dcc

_starts = itertools.count(1)  # makes every start() a new value, so Dash always passes it on


@dataclass(frozen=True)
class Poll:
    name: str  # id prefix of its two stores
    ms: int  # pause between a reply and the next tick

    @property
    def tick(self) -> str:
        """Store the server poll listens to (``Input(poll.tick, "data")``): the tick count."""
        return f"{self.name}-tick"

    @property
    def reply(self) -> str:
        """Store the server poll answers in (``Output(poll.reply, "data")``)."""
        return f"{self.name}-reply"

    def stores(self) -> list:
        """The poll's two stores, for the panel's layout (idle until a reply or start())."""
        idle = self.answer(0, False)
        return [dcc.Store(id=self.tick, data=0), dcc.Store(id=self.reply, data=idle)]

    @staticmethod
    def start() -> dict:
        """Reply-store value that (re)starts the chain."""
        return {"more": True, "start": next(_starts)}

    @staticmethod
    def answer(tick, more: bool) -> dict:
        """Reply-store value of the poll that answered ``tick``: ask again if ``more``."""
        return {"more": bool(more), "tick": tick}


def chain(name: str, ms: int) -> Poll:
    """A Poll named ``name`` asking every ``ms`` after each reply, its clientside link
    registered (call at import, beside the panel's callbacks)."""
    poll = Poll(name, ms)
    clientside_callback(
        f"function (reply) {{ return window.wbPolls.next({json.dumps(poll.tick)}, reply, {ms}); }}",
        Output(poll.tick, "data", allow_duplicate=True),
        Input(poll.reply, "data"),
        prevent_initial_call=True,
    )
    return poll

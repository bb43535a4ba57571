"""A search's whole trajectory as JSONL: the API's export and `trialforge search export`.

One `search` record, then every `trial`, then every `event`, each shaped by
the API's own schemas so an export round-trips. Read from a session of its
own in batches, so a 100k-trial search never sits in memory.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

from app.api.schemas import EventOut, SearchOut, TrialOut
from app.db import session_scope
from app.store import trials


def export_lines(database_url: str, head: SearchOut) -> Iterator[str]:
    """The JSONL lines of the search `head` describes (looked up first, so a missing search
    fails before anything is sent)."""
    yield json.dumps({"record": "search", "data": head.model_dump(mode="json")}) + "\n"
    with session_scope(database_url) as stream:
        for trial in trials.iter_trials(stream, head.id):
            data = TrialOut.build(trial).model_dump(mode="json")
            yield json.dumps({"record": "trial", "data": data}) + "\n"
        for event in trials.iter_events(stream, head.id):
            data = EventOut.model_validate(event).model_dump(mode="json")
            yield json.dumps({"record": "event", "data": data}) + "\n"

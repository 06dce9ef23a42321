"""Write load for the backup-under-load step of the drill (test_restore_drill.py), and the
checks that the dump taken meanwhile is one consistent moment of the database.

Each writer signs in as one of the drill's users and repeats, through the API (HTTPS,
nginx), requests that write several related rows, some in one transaction, some in two:

    chat       conversation + question (one commit), then answer + its sources (another)
    follow-up  question (bumps the conversation's message_count), then answer + sources
    artifact   artifact + its version 1 (one commit)
    edit       version 2 + current_version = 2 (one commit)
    register   a user, who signs in and makes a project

Every request keeps, in commit order, the groups of rows it commits together, as keys
(`message:<id>`, `sources:<message id>:<count>`...): in a consistent dump each group is
all there or all missing, a later group only with the earlier ones, a request that
ended before the dump began all there, one that started after it ended all missing.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
import uuid
from dataclasses import dataclass, field

import kt_target

QUESTIONS = (
    "How do honey bees tell each other where the flowers are?",
    "What happens inside a volcano before it erupts?",
)
# Each turn counts against the user's plan (Free: 100 messages a month); two a round.
MAX_ROUNDS = 45
PASSWORD = "correct horse battery staple"

# Every key of the database the writes are checked against (the restored scratch copy).
KEYS_SQL = " UNION ALL ".join(
    (
        "SELECT 'conversation:' || id FROM conversations",
        "SELECT 'message:' || id FROM messages",
        "SELECT 'sources:' || message_id || ':' || count(*) FROM message_sources"
        " GROUP BY message_id",
        "SELECT 'artifact:' || id FROM artifacts",
        "SELECT 'version:' || artifact_id || ':' || version FROM artifact_versions",
        "SELECT 'user:' || email FROM users",
        "SELECT 'project:' || id FROM projects",
    )
)
# Counters kept beside the rows they count, in the same transaction: a torn copy (tables
# read at different moments) disagrees with itself here. One line per broken row.
INVARIANTS_SQL = " UNION ALL ".join(
    (
        "SELECT 'conversation ' || c.id || ': message_count ' || c.message_count"
        " || ', messages ' || count(m.id) || ', last position ' || coalesce(max(m.position), 0)"
        " FROM conversations c LEFT JOIN messages m ON m.conversation_id = c.id GROUP BY c.id"
        " HAVING c.message_count <> count(m.id) OR c.message_count <> coalesce(max(m.position), 0)",
        "SELECT 'artifact ' || a.id || ': current_version ' || a.current_version"
        " || ', versions ' || count(v.id) || ', last ' || coalesce(max(v.version), 0)"
        " FROM artifacts a LEFT JOIN artifact_versions v ON v.artifact_id = a.id GROUP BY a.id"
        " HAVING a.current_version <> count(v.id)"
        " OR a.current_version <> coalesce(max(v.version), 0)",
    )
)


@dataclass
class Write:
    kind: str
    started: float  # wall clock (the test host's clock is this machine's)
    ended: float
    groups: list[set[str]]  # rows committed together, in commit order

    @property
    def latency(self) -> float:
        return self.ended - self.started


@dataclass
class Writer:
    """One thread of writes as one drill user in the user's project."""

    site: tuple[str, str]
    token: str
    project: str
    writes: list[Write] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    rounds: int = 0
    stop: threading.Event = field(default_factory=threading.Event)

    def _call(
        self, kind: str, method: str, path: str, status: int, body: dict, token: str = ""
    ) -> tuple:
        started = time.time()
        try:
            token = token or self.token
            response = kt_target.api(method, path, token=token, body=body, site=self.site)
        except Exception as error:  # curl could not connect, or timed out
            self.failures.append(f"{kind}: {method} {path}: {error}")
            return None, started, time.time()
        ended = time.time()
        if response.status != status:
            text = response.body.decode(errors="replace")[:300]
            self.failures.append(f"{kind}: {method} {path}: {response.status} {text}")
            return None, started, ended
        return json.loads(response.body), started, ended

    def _turn(self, kind: str, body: dict) -> dict | None:
        answer, started, ended = self._call(kind, "POST", "/chat", 200, body)
        if answer is None:
            return None
        question = {f"message:{answer['user_message_id']}"}
        if kind == "chat":
            question.add(f"conversation:{answer['conversation_id']}")
        message = answer["message"]
        reply = {f"message:{message['id']}"}
        if message["sources"]:
            reply.add(f"sources:{message['id']}:{len(message['sources'])}")
        self.writes.append(Write(kind, started, ended, [question, reply]))
        return answer

    def _round(self) -> None:
        question = QUESTIONS[self.rounds % len(QUESTIONS)]
        first = self._turn("chat", {"message": question, "project_id": self.project})
        if first is None:
            return
        conversation = first["conversation_id"]
        body = {"message": f"And then? ({self.rounds})", "conversation_id": conversation}
        if self._turn("follow-up", body) is None:
            return
        body = {"message_id": first["message"]["id"], "title": f"Load {self.rounds}"}
        artifact, started, ended = self._call("artifact", "POST", "/artifacts", 201, body)
        if artifact is None:
            return
        made = {f"artifact:{artifact['id']}", f"version:{artifact['id']}:1"}
        self.writes.append(Write("artifact", started, ended, [made]))
        body = {"content": f"{artifact['content']}\n\nEdited in round {self.rounds}."}
        path = f"/artifacts/{artifact['id']}"
        edited, started, ended = self._call("edit", "PATCH", path, 200, body)
        if edited is None:
            return
        self.writes.append(Write("edit", started, ended, [{f"version:{artifact['id']}:2"}]))
        # A new user (the drill user's plan allows 3 projects) makes a project.
        email = f"load-{uuid.uuid4().hex[:10]}@example.com"
        body = {"email": email, "password": PASSWORD}
        registered, started, ended = self._call("register", "POST", "/auth/register", 202, body)
        if registered is None:
            return
        self.writes.append(Write("register", started, ended, [{f"user:{email}"}]))
        signed_in, *_ = self._call("sign-in", "POST", "/auth/login", 200, body)
        if signed_in is None:
            return
        body = {"name": f"Load {self.rounds}"}
        project, started, ended = self._call(
            "project", "POST", "/projects", 201, body, token=signed_in["access_token"]
        )
        if project is not None:
            self.writes.append(Write("project", started, ended, [{f"project:{project['id']}"}]))

    def run(self) -> None:
        while not self.stop.is_set() and self.rounds < MAX_ROUNDS:
            self._round()
            self.rounds += 1


def check_against(writes: list[Write], keys: set[str], began: float, ended: float) -> list[str]:
    """What in the dump (its keys) contradicts the writes, given the dump was taken
    between `began` and `ended` (wall clock). Empty: consistent."""
    problems = []
    for write in writes:
        there = [group <= keys for group in write.groups]
        for group, present in zip(write.groups, there, strict=True):
            if not present and group & keys:
                problems.append(f"{write.kind}: part of one transaction: {sorted(group & keys)}"
                                f" without {sorted(group - keys)}")  # fmt: skip
        if any(later and not earlier for earlier, later in itertools.pairwise(there)):
            problems.append(f"{write.kind}: a later commit without the earlier one: {write.groups}")
        if write.ended < began and not all(there):
            problems.append(f"{write.kind}: ended before the dump began, missing: {write.groups}")
        if write.started > ended and any(there):
            problems.append(f"{write.kind}: started after the dump ended, in it: {write.groups}")
    return problems

"""Whether a signed-in person is still an administrator.

Cognito's tokens stay valid for their hour (template.yaml, AdminConsoleClient) whatever happens to the person
meanwhile, and their `cognito:groups` claim is what the pool said at sign-in. So the admin API asks the pool
itself, at most once a minute per person in a warm function: someone removed from the group, disabled or
deleted is refused within a minute. Only a yes is remembered; a no is asked again, so someone just added
back is let in at once.

A person is their token's `sub`, not their user name: a user deleted and created again under the same name (a
leaked password's cleanup, or someone else) is a new user with a new sub, and the old token must not pass for it.
"""

from __future__ import annotations

from qbo_connect.ports import AdministratorDirectory, Clock

RECHECK_SECONDS = 60


class StillAdministrators:
    def __init__(self, directory: AdministratorDirectory, clock: Clock) -> None:
        self._directory = directory
        self._clock = clock
        self._confirmed_at: dict[tuple[str, str], float] = {}

    def confirm(self, username: str, sub: str) -> bool:
        """Whether the pool's user `username` is the token's person (`sub`) and still an administrator."""
        person = (username, sub)
        now = self._clock.now()
        confirmed_at = self._confirmed_at.get(person)
        if confirmed_at is not None and 0 <= now - confirmed_at < RECHECK_SECONDS:
            return True
        if self._directory.is_administrator(username, sub):
            self._confirmed_at[person] = now
            return True
        self._confirmed_at.pop(person, None)
        return False

"""Whether a signed-in person is still an administrator.

Cognito's tokens stay valid for their hour (template.yaml, AdminConsoleClient) whatever happens to the person
meanwhile, and their `cognito:groups` claim is what the pool said at sign-in. So the admin API asks the pool
itself, at most once a minute per person in a warm function: someone removed from the group, disabled or
deleted is refused within a minute. Only a yes is remembered; a no is asked again, so someone just added
back is let in at once.
"""

from __future__ import annotations

from qbo_connect.ports import AdministratorDirectory, Clock

RECHECK_SECONDS = 60


class StillAdministrators:
    def __init__(self, directory: AdministratorDirectory, clock: Clock) -> None:
        self._directory = directory
        self._clock = clock
        self._confirmed_at: dict[str, float] = {}

    def confirm(self, username: str) -> bool:
        now = self._clock.now()
        confirmed_at = self._confirmed_at.get(username)
        if confirmed_at is not None and 0 <= now - confirmed_at < RECHECK_SECONDS:
            return True
        if self._directory.is_administrator(username):
            self._confirmed_at[username] = now
            return True
        self._confirmed_at.pop(username, None)
        return False

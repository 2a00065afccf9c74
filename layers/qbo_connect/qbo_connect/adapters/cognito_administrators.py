"""AdministratorDirectory on the Cognito user pool: what the pool says of a person now, not at sign-in."""

from __future__ import annotations

from botocore.exceptions import ClientError

from qbo_connect.adapters.aws_faults import error_code


class CognitoAdministrators:
    def __init__(self, client, *, user_pool_id: str, group: str) -> None:
        self._client = client
        self._pool = user_pool_id
        self._group = group

    def is_administrator(self, username: str, sub: str) -> bool:
        try:
            user = self._client.admin_get_user(UserPoolId=self._pool, Username=username)
        except ClientError as error:
            if error_code(error) == "UserNotFoundException":
                return False
            raise
        # AdminGetUser also finds a user by an alias (email, preferred_username): only the token's own user counts.
        attributes = {a.get("Name"): a.get("Value") for a in user.get("UserAttributes", [])}
        if attributes.get("sub") != sub:
            return False
        return bool(user.get("Enabled")) and self._group in self._groups_of(user.get("Username", username))

    def _groups_of(self, username: str) -> set[str]:
        groups: set[str] = set()
        request = {"UserPoolId": self._pool, "Username": username, "Limit": 60}
        while True:
            page = self._client.admin_list_groups_for_user(**request)
            groups |= {group["GroupName"] for group in page.get("Groups", [])}
            if not page.get("NextToken"):
                return groups
            request["NextToken"] = page["NextToken"]

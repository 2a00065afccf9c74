"""What the end-to-end tests do with the local stack besides browsing it: its AWS, and a console ID token."""

from __future__ import annotations

from pycognito.aws_srp import AWSSRP


def aws_client(stack, service: str):
    return stack.aws_client(service)


def sign_in_token(stack, *, pool_id: str | None = None, client_id: str | None = None, username=None, password=None):
    """An ID token as the console gets one: USER_SRP_AUTH (pycognito's client), the password never sent."""
    environment = stack.discovery["environment"]
    answer = AWSSRP(
        username or stack.discovery["admin_username"],
        password or stack.discovery["admin_password"],
        pool_id or environment["QBO_ADMIN_USER_POOL_ID"],
        client_id or environment["QBO_ADMIN_CONSOLE_CLIENT_ID"],
        client=aws_client(stack, "cognito-idp"),
    ).authenticate_user()
    return answer["AuthenticationResult"]["IdToken"]

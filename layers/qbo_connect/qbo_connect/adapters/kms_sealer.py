"""TokenSealer on KMS: a rotated token set the vault refused is kept on the connection item, encrypted.

The encryption context binds the ciphertext to its connection, so a sealed copy cannot be replayed
onto another connection's item. KMS encrypts up to 4 KB: a connection secret is about 2.
"""

from __future__ import annotations

import base64

from qbo_connect.domain.secret_document import ConnectionSecret


class KmsTokenSealer:
    def __init__(self, client, key_id: str) -> None:
        self._client = client
        self._key_id = key_id

    def seal(self, secret: ConnectionSecret) -> str:
        response = self._client.encrypt(
            KeyId=self._key_id,
            Plaintext=secret.to_json().encode(),
            EncryptionContext=_context(secret.connection_id),
        )
        return base64.b64encode(response["CiphertextBlob"]).decode()

    def open(self, connection_id: str, sealed: str) -> ConnectionSecret:
        response = self._client.decrypt(
            CiphertextBlob=base64.b64decode(sealed), EncryptionContext=_context(connection_id)
        )
        secret = ConnectionSecret.from_json(response["Plaintext"].decode())
        if secret.connection_id != connection_id:
            raise ValueError("the sealed rotation belongs to another connection")
        return secret


def _context(connection_id: str) -> dict[str, str]:
    return {"qbo-connect:connection-id": connection_id}

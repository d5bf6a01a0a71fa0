"""Apple's Automated Device Enrollment (Apple School Manager's device assignment API).

``token`` decrypts the server token (.p7m) Apple School Manager hands out, ``oauth``
signs the ``/session`` request (OAuth 1.0a, HMAC-SHA1), ``client`` talks to the API
(httpx: the only I/O here, like ``mdm.push``) and ``machineinfo`` reads what a device
sends to the enrollment URL of its ADE profile.
"""

from mdm.ade.errors import ADEAuthError, ADECursorError, ADEError, ADERequestError, ADEUnavailable
from mdm.ade.token import ServerToken, decrypt_server_token

__all__ = ["ADEAuthError", "ADECursorError", "ADEError", "ADERequestError", "ADEUnavailable", "ServerToken",
           "decrypt_server_token"]

"""``/scep``: SCEP (RFC 8894) over HTTP: GetCACaps, GetCACert and PKIOperation (GET and POST).

A refused or broken-but-answerable request gets a signed FAILURE CertRep (HTTP 200);
only a body that is not even a PKIMessage becomes an error reply (ParseError -> 400),
through the application's error handlers.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable

from fastapi import APIRouter, Depends, Query, Request, Response
from starlette.concurrency import run_in_threadpool

from app.routes.body import read_body
from mdm.errors import LimitExceeded, ParseError
from mdm.scep import PKI_MESSAGE_TYPE, ScepService, ca_caps, ca_cert_reply, handle_pki_operation

DEFAULT_MAX_BODY = 64 * 1024
NO_STORE = {"Cache-Control": "no-store"}


def decode_message_param(message: str) -> bytes:
    """The base64 ``message`` of a GET PKIOperation, tolerating the usual mangling
    (unescaped '+' read as space, URL-safe alphabet, missing padding, line breaks)."""
    text = "".join(message.replace(" ", "+").split()).replace("-", "+").replace("_", "/")
    text += "=" * (-len(text) % 4)
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ParseError("PKIOperation message is not base64") from None


def make_scep_router(
    get_service: Callable[..., ScepService], *, max_body: int = DEFAULT_MAX_BODY
) -> APIRouter:
    """Router for ``/scep``. ``get_service`` is a FastAPI dependency returning a ScepService."""
    router = APIRouter(tags=["scep"])

    async def pki_operation(data: bytes, service: ScepService) -> Response:
        if not data:
            raise ParseError("empty PKIOperation message")
        if len(data) > max_body:
            raise LimitExceeded(f"PKIOperation message larger than {max_body} bytes")
        reply = await run_in_threadpool(handle_pki_operation, data, service)
        return Response(reply, media_type=PKI_MESSAGE_TYPE, headers=NO_STORE)

    @router.get(
        "/scep", response_class=Response,
        responses={200: {"content": {"application/x-x509-ca-cert": {}, PKI_MESSAGE_TYPE: {},
                                     "text/plain": {}}}},
    )
    async def scep_get(
        operation: str = Query(..., max_length=32),
        message: str | None = Query(None, max_length=DEFAULT_MAX_BODY * 2),
        service: ScepService = Depends(get_service),
    ) -> Response:
        op = operation.lower()
        if op == "getcacaps":
            return Response(ca_caps(), media_type="text/plain")
        if op == "getcacert":
            ca = await run_in_threadpool(service.ca)
            body, content_type = ca_cert_reply(ca)
            return Response(body, media_type=content_type)
        if op == "pkioperation":
            if not message:
                raise ParseError("PKIOperation needs a message parameter")
            return await pki_operation(decode_message_param(message), service)
        raise ParseError(f"unknown SCEP operation {operation!r}")

    @router.post("/scep", response_class=Response,
                 responses={200: {"content": {PKI_MESSAGE_TYPE: {}}}})
    async def scep_post(
        request: Request,
        operation: str = Query(..., max_length=32),
        service: ScepService = Depends(get_service),
    ) -> Response:
        if operation.lower() != "pkioperation":
            raise ParseError(f"operation {operation!r} is not served by POST")
        return await pki_operation(await read_body(request, max_body), service)

    return router

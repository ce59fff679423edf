"""What every console page needs: the ledger reader (or a clear 409 when there is none) and a read in a
thread that turns an unreadable ledger into a 503 page."""

from __future__ import annotations

import asyncio

from aiohttp import web

from gateway.errors import GatewayError
from gateway.keys import METER
from gateway.metering.ledger import LedgerUnavailable


def reader(request: web.Request):
    ledger = request.config_dict[METER].ledger
    if ledger is None:
        raise GatewayError("This gateway keeps no usage ledger, so there is nothing to show here.", status=409,
                           type="invalid_request_error")
    return ledger.reader


async def read(fn, *args):
    try:
        return await asyncio.to_thread(fn, *args)
    except LedgerUnavailable as e:
        raise GatewayError(f"The ledger cannot be read right now: {e}", status=503, type="service_unavailable") from None

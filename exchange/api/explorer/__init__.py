"""The web explorer, served by the exchange at ``/``: server-rendered pages
(Jinja2, labels in Chinese and English, usable at phone width) with a little
vanilla JavaScript, every asset served by the exchange itself.

=================================  =====================================================
``/``                              catalogue: search box, facets, published listings
``/explore/listings/{id}``         a listing: schema, sample, custody, price, offer, …
``/explore/participants/{key_id}`` a participant's public page and its listings
``/log``                           latest checkpoint and the log's entries, paged
``/anchors``                       anchors: tx, block, confirmations, state, gas
``/verify``                        verify a receipt bundle in the browser
``/operator``                      the operator's figures (filled by the metrics work)
``/docs``, ``/redoc``              the API reference (Swagger UI, ReDoc), served locally
``/assets/…``                      the explorer's, the vendored and the verifier's files
=================================  =====================================================

The pages read through the same services and queries as the API (and get them
through :mod:`exchange.api.deps`); none is in the OpenAPI document. The JSON API
keeps its paths: a listing's JSON stays at ``/listings/{id}``, its page is under
``/explore/``.
"""

from __future__ import annotations

from fastapi import APIRouter

from exchange.api.explorer import (
    api_docs,
    assets,
    catalogue,
    listing_page,
    log_pages,
    operator_page,
    participant_page,
    verify_page,
)

__all__ = ["router"]

router = APIRouter(include_in_schema=False)
for _part in (
    catalogue.router,
    listing_page.router,
    participant_page.router,
    log_pages.router,
    verify_page.router,
    operator_page.router,
    api_docs.router,
    assets.router,
):
    router.include_router(_part)

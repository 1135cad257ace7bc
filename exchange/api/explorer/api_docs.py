"""``/docs`` (Swagger UI) and ``/redoc`` (ReDoc) on the exchange's own copies of their
bundles (``/assets/vendor/…``): the API reference loads offline and from mainland
China alike, nothing from a CDN or a font service."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse

from exchange.api.explorer.assets import WebAssetsDep, WebAssetsMissingError
from exchange.api.explorer.rendering import error_page

__all__ = ["router"]

router = APIRouter(include_in_schema=False)

TITLE = "山城数据交易所 API · Shancheng Data Exchange"
ICON = "/assets/explorer/icon.svg"


@router.get("/docs", response_class=HTMLResponse)
def swagger_ui(request: Request, assets: WebAssetsDep) -> HTMLResponse:
    reason = assets.missing()
    if reason is not None:
        return error_page(WebAssetsMissingError(reason))
    return get_swagger_ui_html(
        openapi_url=request.app.openapi_url,
        title=TITLE,
        swagger_js_url="/assets/vendor/swagger-ui/swagger-ui-bundle.js",
        swagger_css_url="/assets/vendor/swagger-ui/swagger-ui.css",
        swagger_favicon_url=ICON,
        # no badge asking a public validator about the document
        swagger_ui_parameters={"validatorUrl": None},
    )


@router.get("/redoc", response_class=HTMLResponse)
def redoc(request: Request, assets: WebAssetsDep) -> HTMLResponse:
    reason = assets.missing()
    if reason is not None:
        return error_page(WebAssetsMissingError(reason))
    return get_redoc_html(
        openapi_url=request.app.openapi_url,
        title=TITLE,
        redoc_js_url="/assets/vendor/redoc/redoc.standalone.js",
        redoc_favicon_url=ICON,
        with_google_fonts=False,
    )

"""The explorer's static assets, every one served by the exchange itself (no CDN,
nothing fetched at run time):

* ``/assets/explorer/{name}``: the explorer's own CSS, scripts and icon (``static/``
  beside this module, shipped with the package);
* ``/assets/vendor/{name}``: an allow-list of prebuilt files from the pinned npm
  packages under ``web/node_modules`` (``make setup``): Swagger UI, ReDoc and
  sm-crypto's SM2/SM3 browser bundles;
* ``/assets/verifier/{name}``: the in-browser receipt verifier, ES modules under
  ``web/src``.

``web/`` is ``Settings.web_dir`` (default: the repository's). Without its
``node_modules`` the vendor files answer 503 ``web_assets_missing`` naming
``make setup``, and the pages that need them (``/docs``, ``/redoc``, ``/verify``)
say so instead of loading blank.
"""

from __future__ import annotations

import functools
import mimetypes
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Depends
from fastapi.responses import FileResponse, Response

from exchange.api.deps import SettingsDep
from exchange.errors import ExchangeError, NotFoundError

__all__ = [
    "DEFAULT_WEB_DIR",
    "REWRITES",
    "STATIC",
    "VENDOR",
    "AssetNotFoundError",
    "WebAssets",
    "WebAssetsDep",
    "WebAssetsMissingError",
    "get_web_assets",
    "router",
]

STATIC = Path(__file__).parent / "static"
DEFAULT_WEB_DIR = Path(__file__).resolve().parents[3] / "web"
"""The repository's ``web/`` (exchange/api/explorer/assets.py → the repository root)."""

VENDOR = {
    "swagger-ui/swagger-ui-bundle.js": "swagger-ui-dist/swagger-ui-bundle.js",
    "swagger-ui/swagger-ui.css": "swagger-ui-dist/swagger-ui.css",
    "swagger-ui/favicon-32x32.png": "swagger-ui-dist/favicon-32x32.png",
    "redoc/redoc.standalone.js": "redoc/bundles/redoc.standalone.js",
    "sm-crypto/sm2.js": "sm-crypto/dist/sm2.js",
    "sm-crypto/sm3.js": "sm-crypto/dist/sm3.js",
}
"""``/assets/vendor/<name>`` → its file under ``web/node_modules`` (nothing else there
is served)."""

REWRITES: dict[str, tuple[tuple[bytes, bytes], ...]] = {
    "redoc/redoc.standalone.js": (
        # ReDoc's sidebar shows Redocly's logo from its CDN (the bundle's one outside
        # URL): served with an empty inline image instead, so nothing is fetched.
        (
            b"https://cdn.redoc.ly/redoc/logo-mini.svg",
            b"data:image/svg+xml,%3Csvg xmlns='http://www.w3.org/2000/svg'/%3E",
        ),
    ),
}
"""Vendor files served with these replacements (the files on disk stay as installed)."""

VERIFIER_ENTRY = "verify.js"
"""The verifier's module the verify page imports (``web/src/verify.js``)."""

_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,99}(/[A-Za-z0-9_-][A-Za-z0-9._-]{0,99}){0,4}")
"""A relative asset path: plain segments, none starting with a dot (no ``..``)."""
_SERVED_SUFFIXES = frozenset({".js", ".mjs", ".css", ".svg", ".png", ".json"})


class AssetNotFoundError(NotFoundError):
    code = "asset_not_found"


class WebAssetsMissingError(ExchangeError):
    """The pinned browser packages are not installed beside the exchange."""

    status = 503
    code = "web_assets_missing"


@dataclass(frozen=True, slots=True)
class WebAssets:
    """Where the browser assets are (``web/``)."""

    web_dir: Path

    @property
    def node_modules(self) -> Path:
        return self.web_dir / "node_modules"

    @property
    def verifier_dir(self) -> Path:
        return self.web_dir / "src"

    def missing(self) -> str | None:
        """Why the vendor files cannot be served (``None`` when they can)."""
        absent = [name for name, path in VENDOR.items() if not (self.node_modules / path).is_file()]
        if not absent:
            return None
        return (
            "the browser assets are not installed (web/node_modules lacks "
            f"{', '.join(sorted({name.split('/')[0] for name in absent}))}): run `make setup` "
            "(it installs the pinned packages of web/package.json)"
        )

    def verifier_missing(self) -> str | None:
        """Why the in-browser verifier cannot run (``None`` when it can)."""
        if not (self.verifier_dir / VERIFIER_ENTRY).is_file():
            return f"the in-browser verifier (web/src/{VERIFIER_ENTRY}) is not in this installation"
        return self.missing()

    def vendor_file(self, name: str) -> Path:
        relative = VENDOR.get(name)
        if relative is None:
            raise AssetNotFoundError(f"no asset {name!r}")
        path = self.node_modules / relative
        if not path.is_file():
            raise WebAssetsMissingError(
                self.missing() or f"web/node_modules/{relative} is missing: run `make setup`"
            )
        return path

    def verifier_file(self, name: str) -> Path:
        return _file_under(self.verifier_dir, name)


def _file_under(root: Path, name: str) -> Path:
    """``root/name`` when it is a servable file inside ``root``; 404 otherwise."""
    if not _NAME.fullmatch(name) or Path(name).suffix not in _SERVED_SUFFIXES:
        raise AssetNotFoundError(f"no asset {name!r}")
    path = (root / name).resolve()
    if not path.is_relative_to(root.resolve()) or not path.is_file():
        raise AssetNotFoundError(f"no asset {name!r}")
    return path


async def get_web_assets(settings: SettingsDep) -> WebAssets:
    return WebAssets(settings.web_dir or DEFAULT_WEB_DIR)


WebAssetsDep = Annotated[WebAssets, Depends(get_web_assets)]

router = APIRouter(prefix="/assets", include_in_schema=False)


@router.get("/explorer/{name:path}")
def explorer_asset(name: str) -> FileResponse:
    return FileResponse(_file_under(STATIC, name))


@functools.lru_cache(maxsize=len(REWRITES))
def _rewritten(name: str, path: Path, mtime_ns: int) -> bytes:
    """``path`` with the replacements of ``REWRITES[name]`` (kept until the file changes)."""
    content = path.read_bytes()
    for old, new in REWRITES[name]:
        content = content.replace(old, new)
    return content


@router.get("/vendor/{name:path}")
def vendor_asset(name: str, assets: WebAssetsDep) -> Response:
    path = assets.vendor_file(name)
    if name in REWRITES:
        content = _rewritten(name, path, path.stat().st_mtime_ns)
        return Response(content, media_type=mimetypes.guess_type(path.name)[0])
    return FileResponse(path)


@router.get("/verifier/{name:path}")
def verifier_asset(name: str, assets: WebAssetsDep) -> FileResponse:
    return FileResponse(assets.verifier_file(name))

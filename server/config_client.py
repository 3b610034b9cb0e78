"""What Recombee's client-side SDKs (browser, mobile) need in the YAML configuration: a public
token per database, and the web origins that may call the server from a browser.

```yaml
databases:
  shop:
    token: <private token>          # every operation
    public_token: <public token>    # interactions, recommendations and search only
server:
  cors:
    origins: ["https://shop.example"]   # or ["*"]; none by default: no CORS headers
```
"""

from __future__ import annotations

import re

from server.config import ConfigError

MIN_PUBLIC_TOKEN = 16
"""A public token is shorter than this only by mistake (it is a key, if one anyone may read)."""
_ORIGIN = re.compile(r"https?://[A-Za-z0-9.\-]+(:[0-9]{1,5})?")


def parse_public_token(source: str, key: str, value: object, private: str) -> str | None:
    """A database's `public_token` (None where it has none)."""
    if value is None:
        return None
    if not isinstance(value, str) or len(value) < MIN_PUBLIC_TOKEN:
        raise ConfigError(
            source, key, f"must be a string of at least {MIN_PUBLIC_TOKEN} characters"
        )
    if value == private:
        raise ConfigError(source, key, "must differ from the private token")
    return value


def parse_cors(source: str, value: object) -> tuple[str, ...]:
    """`server.cors.origins`: the origins a browser may call from (scheme, host, port; `*`
    for any)."""
    if value is None:
        return ()
    if not isinstance(value, dict):
        raise ConfigError(source, "server.cors", "must be a mapping with origins")
    unknown = sorted(set(value) - {"origins"})
    if unknown:
        raise ConfigError(source, f"server.cors.{unknown[0]}", "is not a setting (origins)")
    origins = value.get("origins", [])
    if not isinstance(origins, list) or not all(isinstance(o, str) for o in origins):
        raise ConfigError(source, "server.cors.origins", "must be a list of origins")
    for origin in origins:
        if origin != "*" and not _ORIGIN.fullmatch(origin):
            raise ConfigError(
                source,
                "server.cors.origins",
                f"{origin!r} is not an origin (scheme://host[:port], no path) or *",
            )
    return tuple(origins)

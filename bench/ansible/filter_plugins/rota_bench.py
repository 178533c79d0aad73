"""Helpers the bench's Ansible playbooks need and Jinja lacks: the
Constellix request signature (HMAC-SHA1), the Plex secrets-grid pick
(dates with seven fractional digits, which strptime cannot read) and
SOAR's app.config (an INI text inside the app's JSON)."""

import base64
import hashlib
import hmac
import time
from datetime import datetime, timedelta, timezone


def constellix_token(api_key, secret_key):
    """Authorization value: Bearer apiKey:base64(HMAC-SHA1(secret, ts_ms)):ts_ms."""
    ts = str(int(time.time() * 1000))
    sig = hmac.new(secret_key.encode(), ts.encode(), hashlib.sha1).digest()
    return "Bearer %s:%s:%s" % (api_key, base64.b64encode(sig).decode(), ts)


def _plex_date(s):
    # 2025-01-31T12:00:00.1234567Z: keep microseconds, drop the 7th digit.
    head, _, frac = s.rstrip("Z").partition(".")
    dt = datetime.strptime(head, "%Y-%m-%dT%H:%M:%S").replace(tzinfo=timezone.utc)
    return dt + timedelta(microseconds=int((frac + "000000")[:6]))


def plex_pick(grid, retire_within_days):
    """The expired secret that expired first, and the still-valid secret
    that expires first if it expires within retire_within_days."""
    now = datetime.now(timezone.utc)
    rows = [(_plex_date(r["validUntil"]), r["id"]) for r in grid]
    expired = sorted(r for r in rows if r[0] <= now)
    valid = sorted(r for r in rows if r[0] > now)
    old = valid[0] if valid else None
    expiring = bool(old) and old[0] - now <= timedelta(days=int(retire_within_days))
    return {
        "expired_id": expired[0][1] if expired else None,
        "old_id": old[1] if old and expiring else None,
    }


def soar_config(app):
    """api_key_id and the App Secret named by api_key_secret in the
    [resilient] section of an app's app.config (None where absent)."""
    text = "\n".join(
        e.get("config_string", "") for e in app["current_installation"].get("executables", [])
    )
    section, key_id, secret = None, None, None
    for line in (l.strip() for l in text.splitlines()):
        if not line or line[0] in "#;":
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1].strip()
            continue
        if section not in (None, "resilient") or "=" not in line:
            continue
        k, v = (x.strip() for x in line.split("=", 1))
        if k == "api_key_id" and not v.startswith(("$", "^")):
            key_id = v
        elif k == "api_key_secret" and v.startswith("$"):
            secret = v[1:].strip("{}")
    return {"api_key_id": key_id, "secret": secret}


class FilterModule(object):
    def filters(self):
        return {
            "constellix_token": constellix_token,
            "plex_pick": plex_pick,
            "soar_config": soar_config,
        }

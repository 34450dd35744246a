"""The HTTP environment (proxies, CA bundle) read once per session instead of per request.

With `trust_env` on, requests reads the environment again on every request of a session:
the proxy variables and NO_PROXY, ~/.netrc, REQUESTS_CA_BUNDLE. In the benchmark that was
about a third of the CPU time of a content upload to Omni. Each session of the connector
talks to one server, so the answer is the same every time: it is read here, once, and the
session stops asking. The variables keep their meaning; a change to them takes effect
with the next run (or worker), not in the middle of one. ~/.netrc is not read: both
servers get their credentials from the connector.
"""

from __future__ import annotations

import os

import requests


def settle_environment(session: requests.Session, url: str, verify: bool | str) -> bool | str:
    """Pin the proxies for `url` on the session and turn `trust_env` off; returns the
    `verify` value to pass with each request (REQUESTS_CA_BUNDLE or CURL_CA_BUNDLE when
    the caller left verification on and gave no bundle of its own)."""
    session.proxies.update(requests.utils.get_environ_proxies(url))
    session.trust_env = False
    if verify is True:
        bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
        if bundle:
            return bundle
    return verify

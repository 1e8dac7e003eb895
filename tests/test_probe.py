"""The http check kind's probe against a real local web site: statuses, at most 3 redirects,
no credentials, link-local and metadata addresses refused (also after DNS resolution), and a
bound on concurrent requests per host."""

from __future__ import annotations

import ipaddress
import socket
import threading

import pytest

from fake_web import FakeWeb
from sre_maturity.clients import probe
from sre_maturity.clients.probe import AddressRefused, Prober
from sre_maturity.support.errors import SourceError


@pytest.fixture
def web():
    with FakeWeb() as fake:
        yield fake


def test_status_body_and_redirects(web):
    web.page("/runbook", "<h1>Runbook: payment-api</h1>")
    web.redirect("/a", "/b")
    web.redirect("/b", web.url + "/c", 301)
    web.redirect("/c", "/runbook", 307)
    prober = Prober(timeout=2)
    answer = prober.probe(web.url + "/a")
    assert (answer.status, answer.url) == (200, web.url + "/runbook")
    assert answer.hops == (web.url + "/a", web.url + "/b", web.url + "/c")
    assert "Runbook: payment-api" in answer.body
    assert prober.probe(web.url + "/missing").status == 404


def test_more_than_three_redirects_cannot_tell(web):
    for a, b in (("/1", "/2"), ("/2", "/3"), ("/3", "/4"), ("/4", "/5")):
        web.redirect(a, b)
    web.page("/5")
    with pytest.raises(SourceError, match="more than 3 redirects"):
        Prober(timeout=2).probe(web.url + "/1")
    assert web.count() == 4


def test_no_credentials_are_sent_even_with_a_netrc(web, tmp_path, monkeypatch):
    (tmp_path / ".netrc").write_text("machine 127.0.0.1 login me password netrc-secret\n")
    (tmp_path / ".netrc").chmod(0o600)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("NETRC", str(tmp_path / ".netrc"))
    web.page("/x")
    assert Prober(timeout=2).probe(web.url + "/x").status == 200
    assert web.credentials_seen == []
    with pytest.raises(AddressRefused, match="user name or password"):
        Prober().probe(web.url.replace("http://", "http://me:pw@") + "/x")


@pytest.mark.parametrize("target", [
    "http://169.254.169.254/latest/meta-data/", "http://[fe80::1]/", "http://metadata.google.internal/",
    "http://[::ffff:169.254.169.254]/", "http://100.100.100.200/", "http://0.0.0.0/",
    "ftp://example.com/x", "http:///nohost"])
def test_forbidden_targets_are_refused_before_any_request(target):
    with pytest.raises(AddressRefused):
        Prober(timeout=1).probe(target)


def test_a_redirect_to_the_metadata_service_is_refused(web):
    web.redirect("/r", "http://169.254.169.254/latest/meta-data/iam/")
    with pytest.raises(AddressRefused, match="metadata"):
        Prober(timeout=2).probe(web.url + "/r")


@pytest.fixture
def fake_dns(monkeypatch):
    """Names ending in ``.test`` resolve to the address the test gives them."""
    table: dict[str, str] = {}
    real = socket.getaddrinfo

    def getaddrinfo(host, port, *args, **kwargs):
        if host in table:
            family = socket.AF_INET6 if ":" in table[host] else socket.AF_INET
            return [(family, socket.SOCK_STREAM, 6, "", (table[host], port))]
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return table


def test_a_name_resolving_to_link_local_is_refused(web, fake_dns):
    fake_dns["sneaky.test"] = "169.254.169.254"
    fake_dns["sneaky6.test"] = "fe80::1"
    port = web.url.rsplit(":", 1)[1]
    for name in ("sneaky.test", "sneaky6.test"):
        with pytest.raises(AddressRefused, match="resolves to .*link-local|metadata"):
            Prober(timeout=1, retries=0).probe(f"http://{name}:{port}/x")
    assert web.count() == 0


def test_the_connection_goes_to_the_address_that_was_checked(web, fake_dns):
    fake_dns["runbooks.test"] = "127.0.0.1"
    web.page("/x", "hello")
    port = web.url.rsplit(":", 1)[1]
    assert Prober(timeout=2).probe(f"http://runbooks.test:{port}/x").body == "hello"


def test_unreachable_and_5xx_cannot_tell(web):
    web.page("/down", "busy", status=503)
    with pytest.raises(SourceError, match="HTTP 503"):
        Prober(timeout=2, retries=1, backoff=0).probe(web.url + "/down")
    assert web.count() == 2  # retried once through the shared policy
    url = web.url
    web.stop()
    with pytest.raises(SourceError, match="connection refused"):
        Prober(timeout=1, retries=0).probe(url + "/x")


def test_a_slow_page_times_out(web):
    web.fail_next(200, hang=1.0, times=5)
    with pytest.raises(SourceError, match="did not answer within 0.2 s"):
        Prober(timeout=0.2, retries=0).probe(web.url + "/x")


def test_unknown_host_name():
    with pytest.raises(SourceError, match="host name .* not found"):
        Prober(timeout=2, retries=0).probe("http://no-such-host.invalid/")


def test_each_url_once_with_a_bound_per_host(web):
    web.latency = 0.05
    urls = [web.page(f"/p{n}") for n in range(12)]
    seen: dict[str, object] = {}
    lock = threading.Lock()

    def done(url, result):
        with lock:
            seen[url] = result

    Prober(timeout=5, workers=8, per_host=3).probe_all(urls + urls, done)
    assert set(seen) == set(urls) and web.count() == 12
    assert all(isinstance(r, probe.ProbeAnswer) and r.status == 200 for r in seen.values())
    assert 1 < web.busy_max <= 3


def test_refused_ip_rules():
    assert probe.refused_ip(ipaddress.ip_address("127.0.0.1")) is None
    assert probe.refused_ip(ipaddress.ip_address("10.1.2.3")) is None
    assert probe.refused_ip(ipaddress.ip_address("fd00:ec2::254")) == "a cloud metadata address"
    assert probe.refused_ip(ipaddress.ip_address("169.254.10.1")) == "a link-local address"

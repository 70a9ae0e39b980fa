#!/usr/bin/env python3
"""Drives chaos-monkey's proxy with the real Toxiproxy client, toxiproxy-python 0.1.1.

tests/proxy.rs runs it once per step; it talks only to the API given.

    toxiproxy_client.py HOST:PORT check
    toxiproxy_client.py HOST:PORT create NAME UPSTREAM      # prints {"listen": "..."}
    toxiproxy_client.py HOST:PORT latency NAME MS           # downstream latency toxic
    toxiproxy_client.py HOST:PORT remove-toxic NAME TOXIC
    toxiproxy_client.py HOST:PORT disable NAME
    toxiproxy_client.py HOST:PORT enable NAME
    toxiproxy_client.py HOST:PORT reset
    toxiproxy_client.py HOST:PORT conformance UPSTREAM      # the client's whole API

Each step prints one JSON line and exits 0; a failed step exits 1 with the reason on
stderr, and a missing client exits 3 (install it with
`pip install -r chaos-monkey/tests/requirements.txt`).
"""

import json
import sys

try:
    from toxiproxy import Toxiproxy
    from toxiproxy.api import APIConsumer
    from toxiproxy.exceptions import InvalidToxic, NotFound, ProxyExists
except ImportError as error:
    sys.stderr.write(
        "the Toxiproxy client is missing (%s): "
        "pip install -r chaos-monkey/tests/requirements.txt\n" % error
    )
    sys.exit(3)


def proxy_named(server, name):
    proxy = server.get_proxy(name)
    if proxy is None:
        raise AssertionError("no proxy %r" % name)
    return proxy


def expect(exception, call, *args, **kwargs):
    try:
        call(*args, **kwargs)
    except exception:
        return
    raise AssertionError("%s did not raise %s" % (call, exception.__name__))


def conformance(server, upstream):
    """Every call of the client, with the answers Toxiproxy would give."""
    assert server.running(), "the API does not accept connections"
    assert server.version(), "empty /version"
    server.destroy_all()

    proxy = server.create(upstream=upstream, name="conformance")
    assert proxy.enabled is True
    assert not proxy.listen.endswith(":0"), proxy.listen
    assert set(server.proxies()) == {"conformance"}
    # The client checks names itself; the server's 409 raises the same exception.
    expect(ProxyExists, server.create, upstream=upstream, name="conformance")
    expect(ProxyExists, APIConsumer.post, "/proxies",
           json={"name": "conformance", "upstream": upstream})
    expect(NotFound, APIConsumer.get, "/proxies/nope")

    proxy.add_toxic(type="latency", attributes={"latency": 100, "jitter": 5})
    proxy.add_toxic(name="cut", type="limit_data", stream="upstream",
                    toxicity=0.5, attributes={"bytes": 1000})
    toxics = proxy.toxics()
    assert set(toxics) == {"latency_downstream", "cut"}, toxics
    latency = proxy.get_toxic("latency_downstream")
    assert (latency.type, latency.stream, latency.toxicity) == ("latency", "downstream", 1)
    assert latency.attributes == {"latency": 100, "jitter": 5}, latency.attributes
    cut = toxics["cut"]
    assert (cut.stream, cut.toxicity, cut.attributes) == ("upstream", 0.5, {"bytes": 1000})
    expect(ProxyExists, proxy.add_toxic, type="latency", attributes={"latency": 1})
    expect(InvalidToxic, proxy.add_toxic, type="earthquake")
    expect(InvalidToxic, proxy.add_toxic, type="latency", stream="sideways")
    assert proxy.destroy_toxic("cut")
    assert proxy.get_toxic("cut") is None
    expect(NotFound, proxy.destroy_toxic, "cut")

    proxy.disable()
    assert proxy_named(server, "conformance").enabled is False
    proxy.enable()
    assert proxy_named(server, "conformance").enabled is True
    with proxy.down():
        assert proxy_named(server, "conformance").enabled is False
    assert proxy_named(server, "conformance").listen == proxy.listen

    populated = server.populate([
        {"name": "populated", "upstream": upstream, "listen": "127.0.0.1:0"},
    ])
    assert [p.name for p in populated] == ["populated"], populated
    # Toxiproxy's own bulk route, which this client does not wrap.
    bulk = APIConsumer.post("/populate", json=[
        {"name": "bulk", "upstream": upstream, "listen": "127.0.0.1:0"},
    ])
    assert bulk.status_code == 201, bulk.status_code
    assert [p["name"] for p in bulk.json()["proxies"]] == ["bulk"], bulk.json()
    assert set(server.proxies()) == {"conformance", "populated", "bulk"}

    proxy.disable()
    assert server.reset()
    assert proxy_named(server, "conformance").enabled is True
    assert proxy.toxics() == {}

    assert server.destroy(proxy)
    assert server.get_proxy("conformance") is None
    expect(NotFound, proxy.destroy)
    server.destroy_all()
    assert server.proxies() == {}
    return {"ok": True}


def main(argv):
    if len(argv) < 3:
        sys.stderr.write(__doc__)
        return 2
    host, _, port = argv[1].rpartition(":")
    server = Toxiproxy()
    server.update_api_consumer(host, int(port))
    command, args = argv[2], argv[3:]

    if command == "check":
        version = server.version()
        if version is None:
            raise AssertionError("nothing listens on %s" % argv[1])
        result = {"version": version.decode()}
    elif command == "create":
        name, upstream = args
        proxy = server.create(upstream=upstream, name=name)
        result = {"name": proxy.name, "listen": proxy.listen}
    elif command == "latency":
        name, ms = args
        proxy_named(server, name).add_toxic(
            type="latency", attributes={"latency": int(ms), "jitter": 0})
        result = {"toxics": sorted(proxy_named(server, name).toxics())}
    elif command == "remove-toxic":
        name, toxic = args
        result = {"removed": proxy_named(server, name).destroy_toxic(toxic)}
    elif command == "disable":
        (name,) = args
        proxy_named(server, name).disable()
        result = {"enabled": proxy_named(server, name).enabled}
    elif command == "enable":
        (name,) = args
        proxy_named(server, name).enable()
        result = {"enabled": proxy_named(server, name).enabled}
    elif command == "reset":
        result = {"reset": server.reset()}
    elif command == "conformance":
        (upstream,) = args
        result = conformance(server, upstream)
    else:
        sys.stderr.write("unknown command %r\n%s" % (command, __doc__))
        return 2
    sys.stdout.write(json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv))
    except (AssertionError, ValueError, NotFound, ProxyExists, InvalidToxic) as failure:
        sys.stderr.write("%s: %s\n" % (type(failure).__name__, failure))
        sys.exit(1)

"""bench surge at the door: shoppers spread over loopback source addresses, door rules merged."""

from __future__ import annotations

import asyncio

import yaml

import guardians
from bench.loadgen import Generator, HttpPool
from bench.surge import demo_rules_path, door_rules


def test_door_rules_add_a_per_ip_and_a_per_buyer_rule_to_the_demo_rules(tmp_path):
    out = door_rules(demo_rules_path(), tmp_path / "rules.yaml", 10, 3)
    doc = yaml.safe_load(out.read_text())
    rs = guardians.parse_document(doc)  # valid as a whole
    by_name = {r.name: r for r in rs.param}
    assert by_name["per-ip"].param == "client_ip" and by_name["per-ip"].resource == "POST /orders"
    assert by_name["per-buyer-door"].param == "body:buyer_id" and by_name["per-buyer-door"].threshold == 3
    demo = guardians.parse_document(yaml.safe_load(demo_rules_path().read_text()))
    assert len(rs.param) == len(demo.param) + 2 and rs.flow == demo.flow
    assert door_rules(demo_rules_path(), tmp_path / "none.yaml", 0, 0) == demo_rules_path()


def test_the_pool_connects_from_several_loopback_addresses_one_per_buyer_group(tmp_path):
    peers: list[str] = []

    async def main() -> list[tuple[int, str | None]]:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            peers.append(writer.get_extra_info("peername")[0])
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except asyncio.IncompleteReadError:
                    break
                length = next((int(h.split(b":")[1]) for h in head.split(b"\r\n")
                               if h.lower().startswith(b"content-length")), 0)
                await reader.readexactly(length)
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                await writer.drain()
            writer.close()

        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        pool = HttpPool("127.0.0.1", port, max_connections=50, timeout_s=2, sources=4)
        gen = Generator(pool, ["A"], 1, tmp_path, buyers=40)
        out = []
        for _ in range(30):
            body, source = gen._body("t")
            status, _, _ = await pool.request("POST", "/x", body, source)
            out.append((status, source))
        pool.close()
        server.close()
        return out

    out = asyncio.run(main())
    assert all(status == 200 for status, _ in out)
    assert {s for _, s in out} <= {"127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5"}
    assert set(peers) == {s for _, s in out} and len(set(peers)) >= 3

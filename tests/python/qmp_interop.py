#!/usr/bin/env python3
"""Drive a Bulkhead QMP socket with the real `qemu.qmp` library.

Usage: qmp_interop.py SOCKET_PATH [--quit]

Checks greeting and negotiation, stop/cont with STOP/RESUME and
query-status transitions, system_reset, several clients at once, QEMU's
error shapes for unknown commands and wrong argument types (via qemu.qmp),
malformed JSON and an oversize request (via a raw socket next to it, since
qemu.qmp itself gives up on id-less errors, for QEMU too), getfd with
SCM_RIGHTS, and finally quit (SHUTDOWN, then the return, then EOF).
Prints "PASS <name>" per check; exits non-zero on the first failure.
"""
import asyncio
import json
import os
import sys

from qemu.qmp import ExecuteError, QMPClient


def check(cond, what):
    if not cond:
        raise AssertionError(what)
    print(f"PASS {what}", flush=True)


async def next_event(client, name, timeout=5.0):
    async def _wait():
        async for ev in client.events:
            if ev["event"] == name:
                return ev
    return await asyncio.wait_for(_wait(), timeout)


async def raw_exchange(path, payloads):
    """Send each payload on a raw, negotiated connection; return replies."""
    reader, writer = await asyncio.open_unix_connection(path, limit=16 << 20)
    greeting = json.loads(await reader.readline())
    assert "QMP" in greeting
    writer.write(b'{"execute":"qmp_capabilities"}')
    await writer.drain()
    assert json.loads(await reader.readline()) == {"return": {}}
    replies = []
    for p in payloads:
        writer.write(p)
        await writer.drain()
        line = await asyncio.wait_for(reader.readline(), 10)
        assert line.endswith(b"\r\n"), line
        replies.append(json.loads(line))
    writer.close()
    return replies


async def main(path, do_quit):
    qmp = QMPClient("interop")
    await qmp.connect(path)
    greeting = qmp.greeting._raw  # the parsed greeting object as received
    ver = greeting["QMP"]["version"]
    check(ver["qemu"] == {"major": 7, "minor": 2, "micro": 22}, "greeting version 7.2.22")
    check(ver["package"].startswith("bulkhead-"), "greeting package names bulkhead")
    check("oob" in greeting["QMP"]["capabilities"], "greeting advertises oob")

    st = await qmp.execute("query-status")
    check(st["status"] == "running" and st["running"] is True, "query-status running")

    stop_ev = asyncio.ensure_future(next_event(qmp, "STOP"))
    await asyncio.sleep(0)
    check(await qmp.execute("stop") == {}, "stop returns {}")
    ev = await stop_ev
    check("seconds" in ev["timestamp"] and "microseconds" in ev["timestamp"], "STOP event with timestamp")
    st = await qmp.execute("query-status")
    check(st["status"] == "paused" and st["running"] is False, "query-status paused after stop")

    resume_ev = asyncio.ensure_future(next_event(qmp, "RESUME"))
    await asyncio.sleep(0)
    await qmp.execute("cont")
    await resume_ev
    check((await qmp.execute("query-status"))["status"] == "running", "RESUME event and running after cont")

    reset_ev = asyncio.ensure_future(next_event(qmp, "RESET"))
    await asyncio.sleep(0)
    await qmp.execute("system_reset")
    ev = await reset_ev
    check(ev["data"] == {"guest": False, "reason": "host-qmp-system-reset"}, "system_reset emits RESET")

    # Several clients at once; events reach all of them.
    others = [QMPClient(f"c{i}") for i in range(4)]
    await asyncio.gather(*(o.connect(path) for o in others))
    names = await asyncio.gather(*(o.execute("query-name") for o in others))
    check(all(n == {"name": "testvm"} for n in names), "4 extra clients served concurrently")
    waits = [asyncio.ensure_future(next_event(o, "STOP")) for o in others + [qmp]]
    await asyncio.sleep(0)
    await others[0].execute("stop")
    await asyncio.gather(*waits)
    check(True, "STOP from one client reaches all 5 clients")
    await qmp.execute("cont")

    # Error shapes through the library; the connection keeps working.
    try:
        await qmp.execute("no-such-command")
        check(False, "unknown command fails")
    except ExecuteError as e:
        check(e.error_class == "CommandNotFound" and e.error.error.desc == "The command no-such-command has not been found",
              "unknown command -> CommandNotFound")
    try:
        await qmp.execute("screendump", {"filename": 42})
        check(False, "wrong type fails")
    except ExecuteError as e:
        check(e.error_class == "GenericError" and e.error.error.desc == "Invalid parameter type for 'filename', expected: string",
              "wrong argument type -> GenericError")
    try:
        await qmp.execute("query-status", {"pad": "x" * (3 << 20)})
        check(False, "3 MiB request fails")
    except ExecuteError as e:
        check(e.error.error.desc == "Parameter 'pad' is unexpected", "3 MiB request parsed whole and answered")
    try:
        await qmp.execute("query-status", {"pad": "z" * (6 << 20)})
        check(False, "6 MiB request fails")
    except ExecuteError as e:
        check(e.error_class == "GenericError" and "maximum request size" in e.error.error.desc,
              "6 MiB request -> GenericError echoing the library's id")
    check((await qmp.execute("query-name")) == {"name": "testvm"}, "connection usable after errors")

    # Malformed JSON and an oversize request on a raw connection.
    replies = await raw_exchange(path, [
        b'{"execute": \ngarbage}',
        b'[1, 2]',
        b'{"execute":"query-status","arguments":{"pad":"' + b"y" * (5 << 20) + b'"}}',
        b'{"execute":"query-name"}',
    ])
    check(replies[0] == {"error": {"class": "GenericError", "desc": "JSON parse error, invalid keyword 'garbage'"}},
          "malformed JSON -> GenericError without id")
    check(replies[1] == {"error": {"class": "GenericError", "desc": "QMP input must be a JSON object"}},
          "non-object -> GenericError")
    check(replies[2]["error"]["class"] == "GenericError" and "maximum request size" in replies[2]["error"]["desc"],
          "5 MiB request -> GenericError")
    check(replies[3] == {"return": {"name": "testvm"}}, "raw connection usable after oversize request")
    check((await qmp.execute("query-status"))["status"] == "running", "library client unaffected by raw errors")

    # fd passing with SCM_RIGHTS.
    r, w = os.pipe()
    qmp.send_fd_scm(r)
    await qmp.execute("getfd", {"fdname": "pipe0"})
    await qmp.execute("closefd", {"fdname": "pipe0"})
    os.close(r)
    os.close(w)
    check(True, "getfd/closefd with SCM_RIGHTS")

    for o in others:
        await o.disconnect()
    if do_quit:
        shut = asyncio.ensure_future(next_event(qmp, "SHUTDOWN"))
        await asyncio.sleep(0)
        await qmp.execute("quit")
        ev = await shut
        check(ev["data"]["reason"] == "host-qmp-quit", "quit -> SHUTDOWN host-qmp-quit, then return")
        await asyncio.sleep(0.3)
        check(not os.path.exists(path), "socket file removed after quit")
        try:
            await qmp.disconnect()
        except EOFError:
            # qemu.qmp reports the server's close after quit this way with
            # real QEMU 7.2 too.
            pass
        return
    await qmp.disconnect()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], "--quit" in sys.argv))
    print("ALL PASSED", flush=True)

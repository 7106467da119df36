"""An hq-interop (HTTP/0.9 over QUIC) client and server on aioquic, a QUIC stack nobody here
wrote, for the interop tests in ../interop_aioquic.rs.

    hq.py server --listen HOST:PORT --www DIR --cert PEM --key PEM [--versions v1,v2]
                 [--retry] [--tickets]
    hq.py client --downloads DIR [--versions v2,v1] [--connections N] [--zero-rtt]
                 [--key-update] URL...

Every connection's facts go to stderr as one line, `connection: key=value ...`: the QUIC version
it ended in, whether its TLS session was resumed, whether early data was accepted, and how many
key updates each side started. The server prints `listening` once its socket is bound. The client
exits 1 unless every file arrived.
"""

import argparse
import asyncio
import os
import ssl
import sys
from urllib.parse import urlparse

from aioquic.asyncio import QuicConnectionProtocol, connect, serve
from aioquic import tls
from aioquic.quic import crypto
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.events import (
    ConnectionTerminated,
    HandshakeCompleted,
    StreamDataReceived,
    StreamReset,
)
from aioquic.quic.packet import QuicProtocolVersion

VERSIONS = {"v1": QuicProtocolVersion.VERSION_1, "v2": QuicProtocolVersion.VERSION_2}

# Key updates counted by who started them: aioquic applies one through CryptoPair._update_key,
# with the trigger "remote_update" when the peer's packet carried the new key phase.
KEY_UPDATES = {}
_apply_update = crypto.CryptoPair._update_key


def _counting_update(pair, trigger):
    counts = KEY_UPDATES.setdefault(id(pair), {"local": 0, "remote": 0})
    counts["remote" if trigger == "remote_update" else "local"] += 1
    _apply_update(pair, trigger)


crypto.CryptoPair._update_key = _counting_update


def report(quic, handshake):
    one_rtt = quic._cryptos.get(tls.Epoch.ONE_RTT) if quic._cryptos else None
    updates = KEY_UPDATES.get(id(one_rtt), {"local": 0, "remote": 0})
    print(
        "connection: version=0x%08x resumed=%s early_data=%s local_key_updates=%d "
        "remote_key_updates=%d"
        % (
            quic._version,
            handshake.session_resumed if handshake else None,
            handshake.early_data_accepted if handshake else None,
            updates["local"],
            updates["remote"],
        ),
        file=sys.stderr,
        flush=True,
    )


class HqServer(QuicConnectionProtocol):
    """Answers each request `GET /name\\r\\n` with the file's bytes, or resets the stream."""

    www = "."

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._requests = {}
        self._handshake = None

    def quic_event_received(self, event):
        if isinstance(event, HandshakeCompleted):
            self._handshake = event
        elif isinstance(event, StreamDataReceived):
            request = self._requests.get(event.stream_id, b"") + event.data
            self._requests[event.stream_id] = request
            if request.endswith(b"\r\n") or event.end_stream:
                self.answer(event.stream_id, request)
        elif isinstance(event, ConnectionTerminated):
            report(self._quic, self._handshake)

    def answer(self, stream_id, request):
        parts = request.strip().split(b" ", 1)
        name = os.path.basename(parts[-1].decode()) if len(parts) == 2 else ""
        path = os.path.join(self.www, name)
        if parts[0] != b"GET" or not name or not os.path.isfile(path):
            self._quic.reset_stream(stream_id, 0x10C)
        else:
            with open(path, "rb") as file:
                self._quic.send_stream_data(stream_id, file.read(), end_stream=True)
        self.transmit()


class HqClient(QuicConnectionProtocol):
    """Sends requests and collects each answer until its stream ends."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._answers = {}
        self.handshake = None
        # Set at HandshakeCompleted. Not the protocol's wait_connected(): aioquic marks a
        # connection connected only when someone was already waiting, so with 0-RTT, where
        # nobody waits, wait_connected() after the handshake never returns.
        self.handshake_done = asyncio.Event()

    def request(self, path):
        stream_id = self._quic.get_next_available_stream_id()
        answer = self._answers[stream_id] = [bytearray(), asyncio.Event(), None]
        self._quic.send_stream_data(stream_id, b"GET " + path.encode() + b"\r\n", True)
        self.transmit()
        return answer

    def quic_event_received(self, event):
        if isinstance(event, HandshakeCompleted):
            self.handshake = event
            self.handshake_done.set()
        elif isinstance(event, StreamDataReceived) and event.stream_id in self._answers:
            answer = self._answers[event.stream_id]
            answer[0] += event.data
            if event.end_stream:
                answer[1].set()
        elif isinstance(event, StreamReset) and event.stream_id in self._answers:
            answer = self._answers[event.stream_id]
            answer[2] = "reset with code 0x%x" % event.error_code
            answer[1].set()
        elif isinstance(event, ConnectionTerminated):
            print(
                "closed: error 0x%x, frame type %s, reason %r"
                % (event.error_code, event.frame_type, event.reason_phrase),
                file=sys.stderr,
                flush=True,
            )
            for answer in self._answers.values():
                answer[2] = answer[2] or "connection closed: %s" % event.reason_phrase
                answer[1].set()


def configuration(args, is_client):
    config = QuicConfiguration(
        is_client=is_client,
        alpn_protocols=["hq-interop"],
        max_data=16 << 20,
        max_stream_data=8 << 20,
        idle_timeout=10.0,
    )
    if args.versions:
        config.supported_versions = [VERSIONS[v] for v in args.versions.split(",")]
    if os.environ.get("SSLKEYLOGFILE"):
        config.secrets_log_file = open(os.environ["SSLKEYLOGFILE"], "a")
    return config


async def run_server(args):
    config = configuration(args, is_client=False)
    config.load_cert_chain(args.cert, args.key)
    HqServer.www = args.www
    tickets = {}
    host, port = args.listen.rsplit(":", 1)
    await serve(
        host.strip("[]"),
        int(port),
        configuration=config,
        create_protocol=HqServer,
        retry=args.retry,
        session_ticket_handler=(lambda t: tickets.__setitem__(t.ticket, t))
        if args.tickets
        else None,
        session_ticket_fetcher=tickets.pop if args.tickets else None,
    )
    print("listening", file=sys.stderr, flush=True)
    await asyncio.Future()


async def fetch(args, urls, ticket_store):
    config = configuration(args, is_client=True)
    config.verify_mode = ssl.CERT_NONE
    if ticket_store:
        config.session_ticket = ticket_store[-1]
    first = urlparse(urls[0])
    async with connect(
        first.hostname,
        first.port,
        configuration=config,
        create_protocol=HqClient,
        session_ticket_handler=ticket_store.append,
        wait_connected=not (args.zero_rtt and ticket_store),
    ) as client:
        answers = [(url, client.request(urlparse(url).path)) for url in urls]
        if args.key_update:
            await client.handshake_done.wait()
            client.request_key_update()
        failed = False
        for url, answer in answers:
            await asyncio.wait_for(answer[1].wait(), 30)
            data, _, error = answer
            name = os.path.basename(urlparse(url).path)
            if error:
                print("%s: %s" % (url, error), file=sys.stderr)
                failed = True
            else:
                with open(os.path.join(args.downloads, name), "wb") as file:
                    file.write(data)
        await asyncio.wait_for(client.handshake_done.wait(), 10)
        # Give the server's session tickets a moment to arrive before the connection closes.
        await asyncio.sleep(0.05)
        client.close()
        await client.wait_closed()
        report(client._quic, client.handshake)
        return not failed


async def run_client(args):
    ticket_store = []
    ok = True
    for _ in range(args.connections):
        ok = await fetch(args, args.urls, ticket_store) and ok
    return 0 if ok else 1


def main():
    parser = argparse.ArgumentParser()
    roles = parser.add_subparsers(dest="role", required=True)
    server = roles.add_parser("server")
    server.add_argument("--listen", required=True)
    server.add_argument("--www", required=True)
    server.add_argument("--cert", required=True)
    server.add_argument("--key", required=True)
    server.add_argument("--versions")
    server.add_argument("--retry", action="store_true")
    server.add_argument("--tickets", action="store_true")
    client = roles.add_parser("client")
    client.add_argument("--downloads", required=True)
    client.add_argument("--versions")
    client.add_argument("--connections", type=int, default=1)
    client.add_argument("--zero-rtt", action="store_true")
    client.add_argument("--key-update", action="store_true")
    client.add_argument("urls", nargs="+")
    args = parser.parse_args()
    if args.role == "server":
        asyncio.run(run_server(args))
    else:
        sys.exit(asyncio.run(run_client(args)))


if __name__ == "__main__":
    main()

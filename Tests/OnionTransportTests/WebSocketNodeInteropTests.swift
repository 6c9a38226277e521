import Foundation
import NIOCore
import NIOPosix
import OnionTransport
import TestSupport
import Testing
import TorCrypto

/// Our bridge against a client built like node-Tor's: hand-made RFC 6455 framing (masked binary
/// frames, here 500 bytes each so they never line up with TLS records) carrying Node's own TLS
/// (`tls.connect({socket: duplex})`), on 127.0.0.1. Needs `node` (any version ≥ 13.10).
@Suite struct WebSocketNodeInteropTests {
    @Test func nodeTLSOverWebSocketToOurBridge() async throws {
        let group = MultiThreadedEventLoopGroup.singleton
        let cert = try TestCertificate.shared()
        let hello = "hello from a node-tor style client\n", reply = "hello from swift\n"
        let (listener, slots) = try await WebSocketLinkTests.bridge(group: group, frameSize: 1000) { loop in
            let peer = TLSTestPeer(eventLoop: loop, expected: hello.utf8.count)
            peer.reply = ByteBuffer(string: reply)
            return peer
        }
        let dir = try TemporaryDirectory("ws-node")
        let script = dir.url.appendingPathComponent("client.js")
        try Self.client.write(to: script, atomically: true, encoding: .utf8)
        let identity = [UInt8](repeating: 7, count: 32)
        let result = try await runProcess("node", [script.path, "\(listener.localAddress!.port!)"],
                                          stdin: "", in: dir.url, timeout: .seconds(30))
        #expect(result.status == 0, "node client failed: \(result.stderr)")
        let lines = Dictionary(result.stdout.split(separator: "\n").compactMap { line -> (String, String)? in
            let parts = line.split(separator: " ", maxSplits: 1)
            return parts.count == 2 ? (String(parts[0]), String(parts[1])) : nil
        }, uniquingKeysWith: { a, _ in a })
        #expect(lines["GOT"] == "hello from swift")
        #expect(lines["CERT"] == cert.certificateDER.hexString)

        let peer = try await slots.wait(0, seconds: 5)
        let got = try await peer.received.futureResult.get(within: 5, "node's bytes")
        #expect(String(buffer: got) == hello)
        let event = try await peer.handshake.futureResult.get(within: 5, "handshake")
        let ours = try await peer.channel.eventLoop.submit {
            try event.exporter.export(label: TLSEngine.torAuth0003ExporterLabel, context: identity, length: 32)
        }.get()
        #expect(lines["EKM"] == ours.hexString)
        #expect(lines["PROTO"] == event.protocolVersion)
        try await peer.channel.closeFuture.get(within: 5, "the bridge connection to close")
        try await listener.close()
    }

    static let client = #"""
    'use strict';
    const net = require('net'), tls = require('tls'), crypto = require('crypto'), { Duplex } = require('stream');
    const port = +process.argv[2];
    const fail = (m) => { console.error(m); process.exit(1); };
    setTimeout(() => fail('timeout'), 20000).unref();
    const sock = net.connect(port, '127.0.0.1');
    const key = crypto.randomBytes(16).toString('base64');
    let buf = Buffer.alloc(0), upgraded = false, duplex;
    sock.on('error', (e) => fail('socket: ' + e.message));
    sock.on('connect', () => sock.write('GET / HTTP/1.1\r\nHost: 127.0.0.1:' + port + '\r\nUpgrade: websocket\r\n' +
      'Connection: Upgrade\r\nSec-WebSocket-Key: ' + key + '\r\nSec-WebSocket-Version: 13\r\nOrigin: http://peersm.com\r\n\r\n'));
    sock.on('data', (d) => {
      buf = Buffer.concat([buf, d]);
      if (!upgraded) {
        const i = buf.indexOf('\r\n\r\n');
        if (i < 0) return;
        const head = buf.subarray(0, i).toString();
        buf = buf.subarray(i + 4);
        if (!/^HTTP\/1\.1 101/.test(head)) fail('no 101: ' + head);
        const accept = crypto.createHash('sha1').update(key + '258EAFA5-E914-47DA-95CA-C5AB0DC85B11').digest('base64');
        if (!head.includes(accept)) fail('bad Sec-WebSocket-Accept for key ' + key + ', expected ' + accept + ': ' + head);
        if (!head.includes('http://peersm.com')) fail('Origin not echoed: ' + head);
        upgraded = true;
        startTLS();
      }
      while (buf.length >= 2) {
        const b0 = buf[0], b1 = buf[1];
        if (b1 & 0x80) fail('masked frame from the server');
        let len = b1 & 0x7f, off = 2;
        if (len === 126) { if (buf.length < 4) return; len = buf.readUInt16BE(2); off = 4; }
        else if (len === 127) { if (buf.length < 10) return; len = Number(buf.readBigUInt64BE(2)); off = 10; }
        if (buf.length < off + len) return;
        const payload = buf.subarray(off, off + len);
        buf = buf.subarray(off + len);
        const op = b0 & 0x0f;
        if (op === 2 || op === 0) duplex.push(payload);
        else if (op === 8) { duplex.push(null); sock.end(); return; }
        else fail('unexpected opcode ' + op);
      }
    });
    function frame(data) {
      const mask = crypto.randomBytes(4);
      let hdr;
      if (data.length < 126) hdr = Buffer.from([0x82, 0x80 | data.length]);
      else { hdr = Buffer.alloc(4); hdr[0] = 0x82; hdr[1] = 0x80 | 126; hdr.writeUInt16BE(data.length, 2); }
      const body = Buffer.alloc(data.length);
      for (let i = 0; i < data.length; i++) body[i] = data[i] ^ mask[i & 3];
      return Buffer.concat([hdr, mask, body]);
    }
    function startTLS() {
      duplex = new Duplex({
        read() {},
        write(chunk, enc, cb) { for (let i = 0; i < chunk.length; i += 500) sock.write(frame(chunk.subarray(i, i + 500))); cb(); },
      });
      const t = tls.connect({ socket: duplex, rejectUnauthorized: false, minVersion: 'TLSv1.2' }, () => {
        console.log('CERT ' + t.getPeerCertificate().raw.toString('hex'));
        console.log('EKM ' + t.exportKeyingMaterial(32, 'EXPORTER FOR TOR TLS CLIENT BINDING AUTH0003', Buffer.alloc(32, 7)).toString('hex'));
        console.log('PROTO ' + t.getProtocol());
        t.write('hello from a node-tor style client\n');
      });
      let got = '';
      t.on('data', (d) => { got += d; if (got.endsWith('\n')) { console.log('GOT ' + got.trim()); t.end(); } });
      t.on('error', (e) => fail('tls: ' + e.message));
    }
    """#
}

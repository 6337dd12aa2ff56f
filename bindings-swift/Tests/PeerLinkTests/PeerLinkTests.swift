// XCTest suite of the Swift bindings; mirrors bindings-kotlin's JVM tests one for one.
// Runs with `swift test` on macOS after build-xcframework.sh.
import CryptoKit
import Foundation
import XCTest

@testable import PeerLink

/// A trust policy that answers `level` and remembers whom it was asked about.
final class RecordingTrust: TrustPolicy, @unchecked Sendable {
    private let level: Int32
    private let lock = NSLock()
    private var _asked: [DeviceInfo] = []
    var asked: [DeviceInfo] { lock.withLock { _asked } }

    init(_ level: Int32) { self.level = level }

    func trustLevel(device: DeviceInfo) async throws -> Int32 {
        lock.withLock { _asked.append(device) }
        await Task.yield()
        return level
    }
}

final class ThrowingTrust: TrustPolicy, @unchecked Sendable {
    struct PolicyBug: Error {}
    func trustLevel(device: DeviceInfo) async throws -> Int32 { throw PolicyBug() }
}

final class Handler: RpcHandler, @unchecked Sendable {
    private let body: @Sendable (String, Data) async throws -> Data
    init(_ body: @escaping @Sendable (String, Data) async throws -> Data) { self.body = body }
    func handle(name: String, args: Data) async throws -> Data { try await body(name, args) }
}

final class Events: NodeListener, @unchecked Sendable {
    private let lock = NSLock()
    private var _connected: [UInt64] = []
    private var _closed: [(UInt64, CloseInfo)] = []
    var connected: [UInt64] { lock.withLock { _connected } }
    var closed: [(UInt64, CloseInfo)] { lock.withLock { _closed } }
    func onConnection(connection: Connection) { lock.withLock { _connected.append(connection.id()) } }
    func onConnectionClosed(connectionId: UInt64, reason: CloseInfo) {
        lock.withLock { _closed.append((connectionId, reason)) }
    }
}

/// Completes once, from any task.
final class Signal<T: Sendable>: @unchecked Sendable {
    private let lock = NSLock()
    private var value: T?
    func complete(_ v: T) { lock.withLock { if value == nil { value = v } } }
    func wait() async throws -> T {
        for _ in 0..<200 {
            if let v = lock.withLock({ value }) { return v }
            try await Task.sleep(nanoseconds: 50_000_000)
        }
        throw XCTSkip("timed out waiting")
    }
}

func makeNode(_ user: String, trust: TrustPolicy? = nil) throws -> Node {
    try Node(config: NodeConfig(
        identity: Identity.generate(), userId: user, deviceId: "\(user)-device",
        userName: nil, deviceName: "\(user)'s test device", trust: trust,
        callTimeoutMs: nil, handshakeTimeoutMs: nil, connectTimeoutMs: nil))
}

struct Pair {
    let server: Node, client: Node, listener: Listener, clientConn: Connection, serverConn: Connection
    func shutdown() async {
        await client.close()
        await server.close()
    }
}

func connect(_ server: Node, _ client: Node) async throws -> Pair {
    let listener = try await server.listen(addr: "127.0.0.1:0")
    let clientConn = try await client.dial(url: listener.url())
    guard let serverConn = await server.accept() else { throw XCTSkip("server accepted nothing") }
    return Pair(server: server, client: client, listener: listener, clientConn: clientConn, serverConn: serverConn)
}

func sha256(_ data: Data) -> String {
    SHA256.hash(data: data).map { String(format: "%02x", $0) }.joined()
}

func waitUntil(_ what: String, _ condition: () -> Bool) async throws {
    for _ in 0..<200 {
        if condition() { return }
        try await Task.sleep(nanoseconds: 50_000_000)
    }
    XCTFail("timed out waiting for \(what)")
}

final class PeerLinkTests: XCTestCase {
    func testIdentityRoundTripsAndNeverPrintsTheSecret() throws {
        let a = Identity.generate()
        let b = try Identity.fromSecretKey(secretKey: a.secretKey())
        XCTAssertEqual(a.publicKey(), b.publicKey())
        XCTAssertEqual(a.publicBoxKey(), b.publicBoxKey())
        XCTAssertEqual(a.sign(message: Data("hi".utf8)).count, 64)
        XCTAssertFalse(a.description.contains(a.secretKey()))
        XCTAssertTrue(a.description.contains(a.publicKey()))
        XCTAssertThrowsError(try Identity.fromSecretKey(secretKey: "not a key")) { error in
            guard case PeerlinkError.InvalidArgument(let code, _) = error else { return XCTFail("\(error)") }
            XCTAssertEqual(code, "invalid_identity")
        }
    }

    func testHandshakeConsultsTheSwiftTrustPolicies() async throws {
        let levels = trustLevels()
        let serverTrust = RecordingTrust(levels.known)
        let clientTrust = RecordingTrust(levels.trusted)
        let server = try makeNode("alice", trust: serverTrust)
        let client = try makeNode("bob", trust: clientTrust)
        let p = try await connect(server, client)
        XCTAssertEqual(serverTrust.asked.map(\.userId), ["bob"])
        XCTAssertEqual(clientTrust.asked.map(\.userId), ["alice"])
        XCTAssertEqual(serverTrust.asked.first?.publicKey, client.publicKey())
        XCTAssertEqual(p.serverConn.trustLevel(), 30)
        XCTAssertEqual(p.clientConn.trustLevel(), 50)
        XCTAssertEqual(p.clientConn.remote().deviceName, "alice's test device")
        XCTAssertEqual(p.clientConn.transportKind(), "websocket")
        let path = await p.clientConn.path()
        XCTAssertEqual(path.kind, "websocket")
        XCTAssertNil(path.local)
        XCTAssertNil(path.remote)
        XCTAssertEqual(p.clientConn.role(), "initiator")
        XCTAssertEqual(p.serverConn.role(), "responder")
        XCTAssertEqual(p.clientConn.handshakeHash(), p.serverConn.handshakeHash())
        await p.shutdown()
    }

    func testRpcBothWaysNotificationsAndEvents() async throws {
        let server = try makeNode("alice")
        let client = try makeNode("bob")
        let events = Events()
        server.setListener(listener: events)
        server.expose(name: "reverse", handler: Handler { _, args in
            try await Task.sleep(nanoseconds: 5_000_000)
            return Data(args.reversed())
        })
        let p = try await connect(server, client)
        let reply = try await p.clientConn.call(name: "reverse", args: Data([1, 2, 3]))
        XCTAssertEqual(reply, Data([3, 2, 1]))

        p.clientConn.expose(name: "whoami", handler: Handler { name, _ in Data("bob answers \(name)".utf8) })
        let back = try await p.serverConn.call(name: "whoami", args: Data())
        XCTAssertEqual(String(decoding: back, as: UTF8.self), "bob answers whoami")

        let noted = Signal<String>()
        server.expose(name: "note", handler: Handler { _, args in
            noted.complete(String(decoding: args, as: UTF8.self))
            return Data()
        })
        try await p.clientConn.notify(name: "note", args: Data("hello".utf8))
        let note = try await noted.wait()
        XCTAssertEqual(note, "hello")

        try await withThrowingTaskGroup(of: (Int, Data).self) { group in
            for i in 0..<50 {
                group.addTask { (i, try await p.clientConn.call(name: "reverse", args: Data([UInt8(i), 0]))) }
            }
            for try await (i, r) in group { XCTAssertEqual(r, Data([0, UInt8(i)])) }
        }

        let rtt = try await p.clientConn.ping()
        XCTAssertGreaterThanOrEqual(rtt, 0)
        let serverSideId = p.serverConn.id()
        try await waitUntil("the connected event") { events.connected.contains(serverSideId) }
        await p.clientConn.close(reason: "done")
        try await waitUntil("the closed event") { events.closed.contains { $0.0 == serverSideId } }
        XCTAssertEqual(events.closed.first { $0.0 == serverSideId }?.1.code, "closed_by_peer")
        await p.shutdown()
    }

    func testRemoteErrorNoHandlerAndTimeout() async throws {
        let server = try makeNode("alice")
        let client = try makeNode("bob")
        server.expose(name: "deny", handler: Handler { _, _ in throw PeerlinkError.Handler(code: "denied", detail: "not you") })
        server.expose(name: "slow", handler: Handler { _, _ in
            try await Task.sleep(nanoseconds: 30_000_000_000)
            return Data()
        })
        let p = try await connect(server, client)
        do {
            _ = try await p.clientConn.call(name: "deny", args: Data())
            XCTFail("deny succeeded")
        } catch PeerlinkError.Remote(let code, let detail, let remoteCode) {
            XCTAssertEqual([code, detail, remoteCode], ["remote", "not you", "denied"])
        }
        do {
            _ = try await p.clientConn.call(name: "nobody", args: Data())
            XCTFail("nobody answered")
        } catch PeerlinkError.NoHandler(let code, _) {
            XCTAssertEqual(code, "no_handler")
        }
        do {
            _ = try await p.clientConn.call(name: "slow", args: Data(), timeoutMs: 200)
            XCTFail("slow answered")
        } catch PeerlinkError.Timeout(let code, _) {
            XCTAssertEqual(code, "timeout")
        }
        await p.shutdown()
    }

    func testUntrustedBothDirections() async throws {
        let levels = trustLevels()
        let cases: [(TrustPolicy?, TrustPolicy?, String)] = [
            (RecordingTrust(levels.untrusted), nil, "rejected_by_peer"),
            (nil, RecordingTrust(levels.malicious), "untrusted"),
            (ThrowingTrust(), nil, "rejected_by_peer"),
        ]
        for (serverTrust, clientTrust, expected) in cases {
            let server = try makeNode("alice", trust: serverTrust)
            let client = try makeNode("bob", trust: clientTrust)
            let listener = try await server.listen(addr: "127.0.0.1:0")
            do {
                _ = try await client.dial(url: listener.url())
                XCTFail("dial succeeded")
            } catch PeerlinkError.Untrusted(let code, _) {
                XCTAssertEqual(code, expected)
            }
            XCTAssertTrue(server.connections().isEmpty)
            XCTAssertTrue(client.connections().isEmpty)
            await client.close()
            await server.close()
        }
    }

    func testClosedForCallsAfterACloseAndPendingCalls() async throws {
        let server = try makeNode("alice")
        let client = try makeNode("bob")
        let started = Signal<Bool>()
        server.expose(name: "hang", handler: Handler { _, _ in
            started.complete(true)
            try await Task.sleep(nanoseconds: 60_000_000_000)
            return Data()
        })
        let p = try await connect(server, client)
        let pending = Task { try await p.clientConn.call(name: "hang", args: Data()) }
        _ = try await started.wait()
        await p.serverConn.close(reason: "bye")
        do {
            _ = try await pending.value
            XCTFail("pending call succeeded")
        } catch PeerlinkError.Closed(_, _, let reason) {
            XCTAssertEqual(reason, "closed_by_peer")
        }
        do {
            _ = try await p.serverConn.call(name: "x", args: Data())
            XCTFail("call after close succeeded")
        } catch PeerlinkError.Closed(let code, _, let reason) {
            XCTAssertEqual(code, "closed")
            XCTAssertEqual(reason, "closed_locally")
        }
        XCTAssertFalse(p.serverConn.isOpen())
        XCTAssertEqual(p.serverConn.closeReason()?.code, "closed_locally")
        await server.close()
        do {
            _ = try await server.listen(addr: "127.0.0.1:0")
            XCTFail("listen after shutdown succeeded")
        } catch PeerlinkError.NodeClosed(let code, _) {
            XCTAssertEqual(code, "node_closed")
        }
        await p.shutdown()
    }

    func testSixteenMebibytesOverAStreamAndAsOneRpc() async throws {
        let server = try makeNode("alice")
        let client = try makeNode("bob")
        server.expose(name: "digest", handler: Handler { _, args in Data(sha256(args).utf8) })
        let p = try await connect(server, client)
        var generator = SystemRandomNumberGenerator()
        let payload = Data((0..<(16 << 20)).map { _ in UInt8.random(in: 0...255, using: &generator) })

        let reader = Task { () throws -> Data in
            guard let stream = await p.serverConn.acceptStream() else { throw XCTSkip("no stream") }
            XCTAssertEqual(stream.name(), "blob")
            var out = Data()
            while let chunk = try await stream.recv() { out.append(chunk) }
            return out
        }
        let stream = try await p.clientConn.openStream(name: "blob")
        var offset = 0
        while offset < payload.count {
            let end = min(offset + (1 << 20), payload.count)
            try await stream.send(data: payload.subdata(in: offset..<end))
            offset = end
        }
        try await stream.finish()
        let received = try await reader.value
        XCTAssertEqual(received.count, payload.count)
        XCTAssertEqual(sha256(received), sha256(payload))

        let digest = try await p.clientConn.call(name: "digest", args: payload)
        XCTAssertEqual(String(decoding: digest, as: UTF8.self), sha256(payload))
        await p.shutdown()
    }

    func testCloseWithoutLeaks() async throws {
        func cycle() async throws -> () -> Bool {
            var handler: Handler? = Handler { _, args in args }
            weak var weakHandler = handler
            let server = try makeNode("alice", trust: RecordingTrust(0))
            let client = try makeNode("bob")
            server.expose(name: "echo", handler: handler!)
            handler = nil
            server.setListener(listener: Events())
            let p = try await connect(server, client)
            let echoed = try await p.clientConn.call(name: "echo", args: Data([9]))
            XCTAssertEqual(echoed, Data([9]))
            await server.close()
            XCTAssertTrue(server.isClosed())
            await p.shutdown()
            return { weakHandler == nil }
        }
        func openFds() -> Int {
            (try? FileManager.default.contentsOfDirectory(atPath: "/dev/fd").count) ?? -1
        }
        _ = try await cycle()
        let baseline = openFds()
        var released: [() -> Bool] = []
        for _ in 0..<20 { released.append(try await cycle()) }
        try await waitUntil("descriptors to return to \(baseline)") { openFds() <= baseline }
        try await waitUntil("Swift handlers to be released by Rust") { released.allSatisfy { $0() } }
    }

    func testCompactCodesConnectWithoutAServer() async throws {
        let alice = try makeNode("alice")
        let bob = try makeNode("bob")
        bob.expose(name: "reverse", handler: Handler { _, args in Data(args.reversed()) })
        let options = CodeOptions(bindAddrs: ["127.0.0.1:0"], stunUrls: [], timeoutMs: 30_000)
        let offer = try await createCodeOffer(options: options)
        let offerCode = offer.code()
        XCTAssertLessThanOrEqual(offerCode.count, 110)
        // The link form carries the same code after '#'.
        let answer = try await createCodeAnswer(offer: "https://lobby.example/#\(offerCode)", options: options)
        do {
            _ = try await createCodeAnswer(offer: answer.code(), options: options)
            XCTFail("an answer code is not an offer")
        } catch PeerlinkError.InvalidArgument(let code, _) {
            XCTAssertEqual(code, "wrong_code_kind")
        }
        async let a = offer.connect(node: alice, answer: answer.code())
        async let b = answer.connect(node: bob)
        let (ca, cb) = try await (a, b)
        XCTAssertEqual(ca.remote().publicKey, bob.publicKey())
        XCTAssertEqual(cb.remote().publicKey, alice.publicKey())
        XCTAssertEqual(ca.transportKind(), "webrtc")
        let reversed = try await ca.call(name: "reverse", args: Data([1, 2]))
        XCTAssertEqual(reversed, Data([2, 1]))
        // After connect, closing the exchange is a no-op; an unused exchange closes its link.
        await offer.close()
        let unused = try await createCodeOffer(options: options)
        await unused.close()
        await unused.close()
        do {
            _ = try await unused.connect(node: alice, answer: answer.code())
            XCTFail("connect after close")
        } catch PeerlinkError.InvalidArgument(let code, _) {
            XCTAssertEqual(code, "invalid_state")
        }
        await alice.close()
        await bob.close()
    }

    func testTrustLevelsCarryTheRustNames() {
        let levels = trustLevels()
        // The Rust `TrustLevel::SELF`; `self` is reserved in Swift.
        XCTAssertEqual(levels.selfDevice, 100)
        XCTAssertEqual(levels.trusted, 50)
        XCTAssertEqual(levels.newUser, 10)
        XCTAssertEqual(levels.malicious, -20)
    }

    func testWebRtcLinkDataChannelsWithPrioritiesAndIceRestart() async throws {
        let alice = try makeNode("alice")
        let bob = try makeNode("bob")
        bob.expose(name: "echo", handler: Handler { _, args in args })
        let p = try await linkPair(alice, bob)
        XCTAssertEqual(p.a.transportKind(), "webrtc")
        let echoed = try await p.a.call(name: "echo", args: Data([1]))
        XCTAssertEqual(echoed, Data([1]))

        let priorities: [ChannelPriority] = [.veryLow, .low, .medium, .high]
        var made: [DataChannel] = []
        for priority in priorities {
            made.append(try await p.offerer.createChannel(label: "ch-\(priority)", options: ChannelOptions(priority: priority)))
        }
        made.append(try await p.offerer.createChannel(
            label: "lossy", options: ChannelOptions(ordered: false, maxRetransmits: 0, priority: .high)))
        // Channels opened on a running link may arrive in any order: pair them by label.
        var arrived: [String: DataChannel] = [:]
        for _ in made {
            guard let ch = await p.answerer.acceptChannel() else { return XCTFail("a channel did not arrive") }
            arrived[ch.label()] = ch
        }
        let seen = made.compactMap { arrived[$0.label()] }
        XCTAssertEqual(seen.map { $0.label() }, made.map { $0.label() })
        XCTAssertEqual(seen.map { $0.priority() }, priorities + [.high])
        for (mine, theirs) in zip(made, seen) {
            try await mine.opened()
            try await theirs.opened()
            try await mine.send(data: Data("to \(mine.label())".utf8))
            let got = await theirs.recv()
            XCTAssertEqual(got, Data("to \(mine.label())".utf8))
        }
        do {
            _ = try await p.offerer.createChannel(
                label: "x", options: ChannelOptions(maxRetransmits: 1, maxPacketLifeTime: 1))
            XCTFail("both partial-reliability limits were accepted")
        } catch PeerlinkError.InvalidArgument(let code, _) {
            XCTAssertEqual(code, "invalid_argument")
        }

        XCTAssertEqual(p.offerer.iceRestarts(), 0)
        try await p.offerer.restartIce()
        XCTAssertEqual(p.offerer.iceRestarts(), 1)
        // One restart at a time: the offerer ignores requests until the restart's answer is in.
        try await waitUntil("the restart answer") { p.toOfferer.appliedAnswers == 2 }
        try await p.answerer.restartIce()
        try await waitUntil("the offerer restarting for the answerer") { p.offerer.iceRestarts() == 2 }
        try await waitUntil("connected again") { p.offerer.state() == "connected" }
        let again = try await p.a.call(name: "echo", args: Data([2]))
        XCTAssertEqual(again, Data([2]))
        await p.close()
        do {
            try await p.offerer.restartIce()
            XCTFail("restart after close")
        } catch PeerlinkError.Closed(let code, _, _) {
            XCTAssertEqual(code, "closed")
        }
        await alice.close()
        await bob.close()
    }

    /// Needs the `peerlink` binary (PEERLINK_BIN) for its signaling server.
    func testSignalingRelayAndHybridWithPathChanges() async throws {
        guard let bin = ProcessInfo.processInfo.environment["PEERLINK_BIN"] else {
            throw XCTSkip("PEERLINK_BIN is not set")
        }
        let server = try SignalingServer(bin)
        defer { server.stop() }
        let alice = try await signalingPeer(server.url, "alice")
        let bob = try await signalingPeer(server.url, "bob")
        bob.node.expose(name: "kind", handler: Handler { _, _ in Data("answered".utf8) })

        async let accepted = bob.dialer.accept(node: bob.node)
        let relay = try await alice.dialer.connectRelay(node: alice.node, deviceId: bob.deviceId)
        let relayPeer = try await accepted
        XCTAssertEqual(relay.transportKind(), "relay")
        XCTAssertEqual(relayPeer?.transportKind(), "relay")
        let viaRelay = try await relay.call(name: "kind", args: Data())
        XCTAssertEqual(viaRelay, Data("answered".utf8))

        // The accepting side keeps an acceptHybrid pending: that is when the WebRTC links of
        // peers it already has are attached to their hybrid connections.
        let bobDialer = bob.dialer, bobNode = bob.node
        let acceptLoop = Task { () -> Int in
            var count = 0
            for _ in 0..<10 {
                guard (try? await bobDialer.acceptHybrid(node: bobNode)) != nil else { break }
                count += 1
            }
            return count
        }
        let h = try await alice.dialer.connectHybrid(
            node: alice.node, deviceId: bob.deviceId,
            options: HybridOptions(retryDelayMs: 100, maxWebrtcAttempts: 1))
        XCTAssertEqual(h.relay()?.transportKind(), "relay")
        let first = await nextPath(h)
        XCTAssertEqual(first, "webrtc")
        XCTAssertEqual(h.current().transportKind(), "webrtc")
        await h.webrtc()?.close(reason: "test")
        let second = await nextPath(h)
        XCTAssertEqual(second, "relay")
        let afterDeath = try await h.current().call(name: "kind", args: Data())
        XCTAssertEqual(afterDeath, Data("answered".utf8))
        await h.close(reason: nil)
        XCTAssertFalse(h.isOpen())
        await alice.dialer.close()
        await bob.dialer.close()
        let acceptedCount = await acceptLoop.value
        XCTAssertEqual(acceptedCount, 1)
        await alice.node.close()
        await bob.node.close()
    }
}

/// The next `path` event of `h` (other events skipped, at most 20), or nil once it closed.
func nextPath(_ h: HybridConnection) async -> String? {
    for _ in 0..<20 {
        guard let event = await h.nextEvent() else { return nil }
        if event.kind == "path" { return event.path }
    }
    return nil
}

/// Carries one link's signals to the other link, as an app would over its own channel.
final class SignalPipe: WebRtcLinkListener, @unchecked Sendable {
    private let lock = NSLock()
    private var _peer: WebRtcLink?
    var peer: WebRtcLink? {
        get { lock.withLock { _peer } }
        set { lock.withLock { _peer = newValue } }
    }
    private var _appliedAnswers = 0
    /// Answers the peer has applied (its handleSignal returned).
    var appliedAnswers: Int { lock.withLock { _appliedAnswers } }
    func onSignal(json: String) {
        guard let to = peer else { return }
        Task {
            if (try? await to.handleSignal(json: json)) != nil, json.contains(#""type":"answer""#) {
                lock.withLock { _appliedAnswers += 1 }
            }
        }
    }
    func onStateChange(state: String) {}
}

let loopback = WebRtcOptions(bindAddrs: ["127.0.0.1:0"])

struct LinkPair {
    let offerer: WebRtcLink, answerer: WebRtcLink, a: Connection, b: Connection, toOfferer: SignalPipe
    func close() async {
        await offerer.close()
        await answerer.close()
    }
}

func linkPair(_ from: Node, _ to: Node) async throws -> LinkPair {
    let offerer = try await WebRtcLink.create(role: .offerer, options: loopback)
    let answerer = try await WebRtcLink.create(role: .answerer, options: loopback)
    let toAnswerer = SignalPipe()
    toAnswerer.peer = answerer
    let toOfferer = SignalPipe()
    toOfferer.peer = offerer
    offerer.setListener(listener: toAnswerer)
    answerer.setListener(listener: toOfferer)
    try await offerer.start()
    async let a = offerer.connect(node: from, timeoutMs: nil)
    async let b = answerer.connect(node: to, timeoutMs: nil)
    let (ca, cb) = try await (a, b)
    return LinkPair(offerer: offerer, answerer: answerer, a: ca, b: cb, toOfferer: toOfferer)
}

/// `peerlink serve` on 127.0.0.1.
final class SignalingServer {
    let process = Process()
    let url: String

    init(_ bin: String) throws {
        process.executableURL = URL(fileURLWithPath: bin)
        process.arguments = ["serve", "--listen", "127.0.0.1:0", "--no-lobby"]
        let out = Pipe()
        process.standardOutput = out
        process.standardError = FileHandle.nullDevice
        try process.run()
        var text = ""
        // The address is in the server's first output; bounded by the number of reads.
        for _ in 0..<50 {
            let chunk = out.fileHandleForReading.availableData
            if chunk.isEmpty { break }
            text += String(decoding: chunk, as: UTF8.self)
            if let range = text.range(of: #"signaling server on (ws://\S+)"#, options: .regularExpression) {
                url = String(text[range].dropFirst("signaling server on ".count))
                return
            }
        }
        process.terminate()
        throw XCTSkip("the signaling server printed no address")
    }

    func stop() { process.terminate() }
}

struct SignalingPeer {
    let node: Node, dialer: WebRtcDialer, deviceId: String
}

func signalingPeer(_ url: String, _ user: String) async throws -> SignalingPeer {
    let identity = Identity.generate()
    let node = try Node(config: NodeConfig(
        identity: identity, userId: user, deviceId: "\(user)-device",
        userName: nil, deviceName: nil, trust: nil,
        callTimeoutMs: nil, handshakeTimeoutMs: nil, connectTimeoutMs: nil))
    let client = try await SignalingClient.connect(options: SignalingOptions(
        urls: [url], identity: identity, userId: user, deviceId: "\(user)-device"))
    let dialer = try WebRtcDialer(client: client, options: DialerOptions(webrtc: loopback, acceptRelay: true))
    return SignalingPeer(node: node, dialer: dialer, deviceId: "\(user)-device")
}

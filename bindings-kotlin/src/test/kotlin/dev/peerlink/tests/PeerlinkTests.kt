// JVM tests of the Kotlin bindings against the Linux library, run by scripts/test.sh
// (suite "kotlin"). A plain main() instead of a test framework: only kotlinc, JNA and
// kotlinx-coroutines are needed. Prints "N passed, N failed" last and returns normally, so the
// process must also exit by itself (the runner treats a hang as a failure).
package dev.peerlink.tests

import dev.peerlink.*
import java.io.File
import java.lang.ref.WeakReference
import java.security.MessageDigest
import java.util.concurrent.ConcurrentLinkedQueue
import kotlinx.coroutines.*

private var passed = 0
private var failed = 0

private fun test(name: String, body: suspend CoroutineScope.() -> Unit) {
    try {
        runBlocking { withTimeout(120_000) { body() } }
        passed++
        println("ok - $name")
    } catch (e: Throwable) {
        failed++
        println("FAIL - $name: $e")
        e.printStackTrace(System.out)
    }
}

private fun check(condition: Boolean, message: () -> String) {
    if (!condition) throw AssertionError(message())
}

private inline fun <reified E : Throwable> expectThrows(block: () -> Unit): E {
    try {
        block()
    } catch (e: Throwable) {
        if (e is E) return e
        throw AssertionError("expected ${E::class.simpleName}, got $e", e)
    }
    throw AssertionError("expected ${E::class.simpleName}, nothing was thrown")
}

/** A trust policy that answers [level] and remembers whom it was asked about. */
private class RecordingTrust(private val level: Int) : TrustPolicy {
    val asked = ConcurrentLinkedQueue<DeviceInfo>()
    override suspend fun trustLevel(device: DeviceInfo): Int {
        asked.add(device)
        yield() // really suspends: the handshake awaits a Kotlin coroutine
        return level
    }
}

private class Handler(private val body: suspend (String, ByteArray) -> ByteArray) : RpcHandler {
    override suspend fun handle(name: String, args: ByteArray): ByteArray = body(name, args)
}

private class Events : NodeListener {
    val connected = ConcurrentLinkedQueue<ULong>()
    val closed = ConcurrentLinkedQueue<Pair<ULong, CloseInfo>>()
    override fun onConnection(connection: Connection) {
        connection.use { connected.add(it.id()) }
    }
    override fun onConnectionClosed(connectionId: ULong, reason: CloseInfo) {
        closed.add(connectionId to reason)
    }
}

private fun node(user: String, trust: TrustPolicy? = null, callTimeoutMs: ULong? = null): Node =
    Identity.generate().use { id ->
        Node(NodeConfig(id, user, "$user-device", deviceName = "$user's test device", trust = trust, callTimeoutMs = callTimeoutMs))
    }

/** A listening server, a client dialled to it, and both ends of the connection. */
private class Pair2(
    val server: Node,
    val client: Node,
    val listener: Listener,
    val clientConn: Connection,
    val serverConn: Connection,
) {
    suspend fun shutdown() {
        client.shutdown()
        server.shutdown()
        destroy()
    }

    fun destroy() = listOf(clientConn, serverConn, listener, client, server).forEach { it.destroy() }
}

private suspend fun connect(server: Node, client: Node): Pair2 {
    val listener = server.listen("127.0.0.1:0")
    val clientConn = client.dial(listener.url())
    val serverConn = server.accept() ?: throw AssertionError("server accepted nothing")
    return Pair2(server, client, listener, clientConn, serverConn)
}

private fun sha256(bytes: ByteArray): String =
    MessageDigest.getInstance("SHA-256").digest(bytes).joinToString("") { "%02x".format(it) }

private fun openFds(): Int = File("/proc/self/fd").list()?.size ?: -1

private suspend fun waitUntil(what: String, condition: () -> Boolean) {
    repeat(200) {
        if (condition()) return
        delay(50)
    }
    throw AssertionError("timed out waiting for $what")
}

/** Carries one link's signals to the other link, as an app would over its own channel. */
private class SignalPipe(private val scope: CoroutineScope) : WebRtcLinkListener {
    var peer: WebRtcLink? = null
    val states = ConcurrentLinkedQueue<String>()
    /** Answers the peer has applied (its handleSignal returned). */
    val appliedAnswers = java.util.concurrent.atomic.AtomicInteger()
    override fun onSignal(json: String) {
        val to = peer ?: return
        scope.launch {
            runCatching { to.handleSignal(json) }.onSuccess {
                if (json.contains("\"type\":\"answer\"")) appliedAnswers.incrementAndGet()
            }
        }
    }
    override fun onStateChange(state: String) {
        states.add(state)
    }
}

private val LOOPBACK = WebRtcOptions(bindAddrs = listOf("127.0.0.1:0"))

/** A self-signed CA certificate (no key kept): a trust anchor for the turnTlsRoots checks. */
private val TEST_CA_PEM = """
-----BEGIN CERTIFICATE-----
MIIBqzCCAVGgAwIBAgIUZI9nzIhEzMFe3UETmN3f2f6IsHowCgYIKoZIzj0EAwIw
IjEgMB4GA1UEAwwXcGVlcmxpbmsgS290bGluIHRlc3QgQ0EwIBcNMjYxMjA2MTAw
NTExWhgPMjEyNjExMTIxMDA1MTFaMCIxIDAeBgNVBAMMF3BlZXJsaW5rIEtvdGxp
biB0ZXN0IENBMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE9ZkPZy9CRN7BZVk7
4WVE783kWFmn9VakyCXqbNdiQ2vwezi2lnJJFmDac2KLUY14w4Xkj1PyWAzyCvf+
tUY7JqNjMGEwHQYDVR0OBBYEFH2PgC1h7YuQ7h1jzaz2n7472isdMB8GA1UdIwQY
MBaAFH2PgC1h7YuQ7h1jzaz2n7472isdMA8GA1UdEwEB/wQFMAMBAf8wDgYDVR0P
AQH/BAQDAgIEMAoGCCqGSM49BAMCA0gAMEUCICPXAH9Z5NEjUPRKMVnwVxrXjENt
c8r+Yvm6dw4VUvI7AiEA2/UYAXey9eQHOpGsrZksIBYdulB6l9+DtVlXzCWUU64=
-----END CERTIFICATE-----
""".trimIndent()

/** An offerer and an answerer whose signals Kotlin carries; both connections made over them. */
private class LinkPair(
    val offerer: WebRtcLink,
    val answerer: WebRtcLink,
    val a: Connection,
    val b: Connection,
    val scope: CoroutineScope,
    val toOfferer: SignalPipe,
) {
    suspend fun close() {
        offerer.closeLink()
        answerer.closeLink()
        scope.cancel()
        listOf(a, b, offerer, answerer).forEach { it.destroy() }
    }
}

private suspend fun linkPair(from: Node, to: Node): LinkPair {
    val scope = CoroutineScope(Dispatchers.IO + SupervisorJob())
    val offerer = WebRtcLink.create(WebRtcRole.OFFERER, LOOPBACK)
    val answerer = WebRtcLink.create(WebRtcRole.ANSWERER, LOOPBACK)
    val toAnswerer = SignalPipe(scope).also { it.peer = answerer }
    val toOfferer = SignalPipe(scope).also { it.peer = offerer }
    offerer.setListener(toAnswerer)
    answerer.setListener(toOfferer)
    offerer.start()
    val (a, b) = coroutineScope {
        val a = async { offerer.connect(from) }
        val b = async { answerer.connect(to) }
        a.await() to b.await()
    }
    return LinkPair(offerer, answerer, a, b, scope, toOfferer)
}

/** `peerlink serve` on 127.0.0.1 (the binary next to the library, or -Dpeerlink.bin). */
private class SignalingServer : AutoCloseable {
    private val process: Process
    val url: String

    init {
        val bin = System.getProperty("peerlink.bin") ?: throw AssertionError("-Dpeerlink.bin is not set")
        check(File(bin).canExecute()) { "no peerlink binary at $bin" }
        val builder = ProcessBuilder(bin, "serve", "--listen", "127.0.0.1:0", "--no-lobby")
        builder.environment()["RUST_LOG"] = "warn"
        builder.redirectError(ProcessBuilder.Redirect.DISCARD)
        process = builder.start()
        val reader = process.inputStream.bufferedReader()
        var found: String? = null
        // The address is the server's first lines of output; bounded by the line count.
        for (i in 0 until 50) {
            val line = reader.readLine() ?: break
            val m = Regex("signaling server on (ws://\\S+)").find(line)
            if (m != null) {
                found = m.groupValues[1]
                break
            }
        }
        url = found ?: run { process.destroyForcibly(); throw AssertionError("the signaling server printed no address") }
        // Keep reading so a full pipe never blocks the server.
        Thread { runCatching { reader.readLines() } }.apply { isDaemon = true }.start()
    }

    override fun close() {
        process.destroy()
        if (!process.waitFor(5, java.util.concurrent.TimeUnit.SECONDS)) process.destroyForcibly()
    }
}

/** A node with a signaling client and a dialer that also accepts relay links. */
private class SignalingPeer(val node: Node, val dialer: WebRtcDialer, val deviceId: String) {
    suspend fun close() {
        dialer.closeDialer()
        node.shutdown()
        dialer.destroy()
        node.destroy()
    }
}

private suspend fun signalingPeer(server: SignalingServer, user: String): SignalingPeer {
    val identity = Identity.generate()
    val node = Node(NodeConfig(identity, user, "$user-device"))
    val client = SignalingClient.connect(SignalingOptions(listOf(server.url), identity, user, "$user-device"))
    val dialer = WebRtcDialer(client, DialerOptions(webrtc = LOOPBACK, acceptRelay = true))
    expectThrows<PeerlinkException.InvalidArgument> { WebRtcDialer(client, null) }.also {
        check(it.code == "invalid_state") { "second dialer: ${it.code}" }
    }
    client.destroy()
    identity.destroy()
    return SignalingPeer(node, dialer, "$user-device")
}

/** The next `path` event of [h] (other events skipped, at most 20), or null once it closed. */
private suspend fun nextPath(h: HybridConnection): String? {
    repeat(20) {
        val event = h.nextEvent() ?: return null
        if (event.kind == "path") return event.path
    }
    throw AssertionError("no path event among 20 events")
}

fun main() {
    test("identity: keys round-trip through the secret key; the secret never prints") {
        val a = Identity.generate()
        val b = Identity.fromSecretKey(a.secretKey())
        check(a.publicKey() == b.publicKey()) { "public keys differ" }
        check(a.publicBoxKey() == b.publicBoxKey()) { "box keys differ" }
        check(a.sign("hi".toByteArray()).size == 64) { "signature is not 64 bytes" }
        check(!a.toString().contains(a.secretKey())) { "toString shows the secret key" }
        check(a.toString().contains(a.publicKey())) { "toString lacks the public key" }
        val e = expectThrows<PeerlinkException.InvalidArgument> { Identity.fromSecretKey("not a key") }
        check(e.code == "invalid_identity") { "code ${e.code}" }
        a.destroy(); b.destroy()
    }

    test("two nodes connect over loopback WebSocket and the handshake consults the Kotlin trust policies") {
        val serverTrust = RecordingTrust(trustLevels().known)
        val clientTrust = RecordingTrust(trustLevels().trusted)
        val server = node("alice", serverTrust)
        val client = node("bob", clientTrust)
        val p = connect(server, client)
        check(serverTrust.asked.map { it.userId } == listOf("bob")) { "server asked about ${serverTrust.asked}" }
        check(clientTrust.asked.map { it.userId } == listOf("alice")) { "client asked about ${clientTrust.asked}" }
        check(serverTrust.asked.first().publicKey == client.publicKey()) { "server saw another key" }
        check(p.serverConn.trustLevel() == 30) { "server level ${p.serverConn.trustLevel()}" }
        check(p.clientConn.trustLevel() == 50) { "client level ${p.clientConn.trustLevel()}" }
        check(p.clientConn.remote().deviceName == "alice's test device") { "remote ${p.clientConn.remote()}" }
        check(p.clientConn.transportKind() == "websocket") { p.clientConn.transportKind() }
        val path = p.clientConn.path()
        check(path.kind == "websocket" && path.local == null && path.remote == null) { "path $path" }
        check(p.clientConn.role() == "initiator" && p.serverConn.role() == "responder") { "roles" }
        check(p.clientConn.handshakeHash().contentEquals(p.serverConn.handshakeHash())) { "handshake hashes differ" }
        p.shutdown()
    }

    test("RPC both ways with Kotlin handlers, notifications and events") {
        val server = node("alice")
        val client = node("bob")
        val serverEvents = Events()
        server.setListener(serverEvents)
        server.expose("reverse", Handler { _, args -> delay(5); args.reversedArray() })
        val p = connect(server, client)
        val reply = p.clientConn.call("reverse", byteArrayOf(1, 2, 3))
        check(reply.contentEquals(byteArrayOf(3, 2, 1))) { "reverse gave ${reply.toList()}" }

        p.clientConn.expose("whoami", Handler { name, _ -> "bob answers $name".toByteArray() })
        val back = String(p.serverConn.call("whoami", ByteArray(0)))
        check(back == "bob answers whoami") { "callback gave $back" }

        val noted = CompletableDeferred<String>()
        server.expose("note", Handler { _, args -> noted.complete(String(args)); ByteArray(0) })
        p.clientConn.notify("note", "hello".toByteArray())
        check(withTimeout(10_000) { noted.await() } == "hello") { "notification lost" }

        // Many calls in flight at once, each answered by a suspending Kotlin handler.
        val replies = (0 until 50).map { i -> async { p.clientConn.call("reverse", byteArrayOf(i.toByte(), 0)) } }.awaitAll()
        replies.forEachIndexed { i, r -> check(r.contentEquals(byteArrayOf(0, i.toByte()))) { "call $i gave ${r.toList()}" } }

        check(p.clientConn.ping() >= 0.0) { "ping" }
        val serverSideId = p.serverConn.id()
        waitUntil("the connected event") { serverEvents.connected.contains(serverSideId) }
        p.clientConn.closeConnection("done")
        waitUntil("the closed event") { serverEvents.closed.any { it.first == serverSideId } }
        check(serverEvents.closed.first { it.first == serverSideId }.second.code == "closed_by_peer") { "close ${serverEvents.closed}" }
        p.shutdown()
    }

    test("typed exceptions: remote handler error, no handler, timeout") {
        val server = node("alice")
        val client = node("bob")
        server.expose("deny", Handler { _, _ -> throw PeerlinkException.Handler("denied", "not you") })
        server.expose("slow", Handler { _, _ -> delay(30_000); ByteArray(0) })
        val p = connect(server, client)
        val remote = expectThrows<PeerlinkException.Remote> { p.clientConn.call("deny", ByteArray(0)) }
        check(remote.code == "remote" && remote.remoteCode == "denied" && remote.detail == "not you") { "remote $remote" }
        val missing = expectThrows<PeerlinkException.NoHandler> { p.clientConn.call("nobody", ByteArray(0)) }
        check(missing.code == "no_handler") { "no handler ${missing.code}" }
        val slow = expectThrows<PeerlinkException.Timeout> { p.clientConn.call("slow", ByteArray(0), 200uL) }
        check(slow.code == "timeout") { "timeout ${slow.code}" }
        p.shutdown()
    }

    test("typed exceptions: untrusted, both directions") {
        // The server refuses the client: the client learns it was rejected.
        run {
            val server = node("alice", RecordingTrust(trustLevels().untrusted))
            val client = node("bob")
            val listener = server.listen("127.0.0.1:0")
            val e = expectThrows<PeerlinkException.Untrusted> { client.dial(listener.url()) }
            check(e.code == "rejected_by_peer") { "code ${e.code}" }
            check(server.connections().isEmpty() && client.connections().isEmpty()) { "a refused link stayed" }
            client.shutdown(); server.shutdown()
            listOf(listener, client, server).forEach { it.destroy() }
        }
        // The client refuses the server.
        run {
            val server = node("alice")
            val client = node("bob", RecordingTrust(trustLevels().malicious))
            val listener = server.listen("127.0.0.1:0")
            val e = expectThrows<PeerlinkException.Untrusted> { client.dial(listener.url()) }
            check(e.code == "untrusted") { "code ${e.code}" }
            client.shutdown(); server.shutdown()
            listOf(listener, client, server).forEach { it.destroy() }
        }
        // A policy that throws refuses too.
        run {
            val throwing = object : TrustPolicy {
                override suspend fun trustLevel(device: DeviceInfo): Int = throw IllegalStateException("policy bug")
            }
            val server = node("alice", throwing)
            val client = node("bob")
            val listener = server.listen("127.0.0.1:0")
            val e = expectThrows<PeerlinkException.Untrusted> { client.dial(listener.url()) }
            check(e.code == "rejected_by_peer") { "code ${e.code}" }
            client.shutdown(); server.shutdown()
            listOf(listener, client, server).forEach { it.destroy() }
        }
    }

    test("typed exceptions: closed, for calls after a close and calls pending when the peer closes") {
        val server = node("alice")
        val client = node("bob")
        val started = CompletableDeferred<Unit>()
        server.expose("hang", Handler { _, _ -> started.complete(Unit); delay(60_000); ByteArray(0) })
        val p = connect(server, client)
        val pending = async { runCatching { p.clientConn.call("hang", ByteArray(0)) } }
        started.await()
        p.serverConn.closeConnection("bye")
        val e = pending.await().exceptionOrNull()
        check(e is PeerlinkException.Closed && e.reason == "closed_by_peer") { "pending call ended with $e" }
        val after = expectThrows<PeerlinkException.Closed> { p.serverConn.call("x", ByteArray(0)) }
        check(after.code == "closed" && after.reason == "closed_locally") { "after close: $after" }
        check(!p.serverConn.isOpen() && p.serverConn.closeReason()?.code == "closed_locally") { "close reason" }
        server.shutdown()
        val afterShutdown = expectThrows<PeerlinkException.NodeClosed> { server.listen("127.0.0.1:0") }
        check(afterShutdown.code == "node_closed") { afterShutdown.code }
        p.shutdown()
    }

    test("a 16 MiB transfer over a byte stream and as one RPC") {
        val server = node("alice")
        val client = node("bob")
        server.expose("digest", Handler { _, args -> sha256(args).toByteArray() })
        val p = connect(server, client)
        val payload = ByteArray(16 shl 20).also { java.util.Random(7).nextBytes(it) }

        val reader = async {
            val stream = p.serverConn.acceptStream() ?: throw AssertionError("no stream")
            stream.use {
                check(it.name() == "blob") { "name ${it.name()}" }
                val out = java.io.ByteArrayOutputStream()
                while (true) {
                    val chunk = it.recv() ?: break
                    out.write(chunk)
                }
                out.toByteArray()
            }
        }
        p.clientConn.openStream("blob").use { stream ->
            var offset = 0
            while (offset < payload.size) {
                val end = minOf(offset + (1 shl 20), payload.size)
                stream.send(payload.copyOfRange(offset, end))
                offset = end
            }
            stream.finish()
        }
        val received = reader.await()
        check(received.size == payload.size) { "received ${received.size} bytes" }
        check(sha256(received) == sha256(payload)) { "stream content differs" }

        val digest = String(p.clientConn.call("digest", payload))
        check(digest == sha256(payload)) { "RPC digest $digest" }
        p.shutdown()
    }

    test("compact codes: offer code, answer code, verified connection over WebRTC, no server") {
        val alice = node("alice")
        val bob = node("bob")
        bob.expose("reverse", Handler { _, args -> args.reversedArray() })
        val options = CodeOptions(bindAddrs = listOf("127.0.0.1:0"), timeoutMs = 30_000uL)
        val offer = createCodeOffer(options)
        val offerCode = offer.code()
        check(Regex("^[A-Za-z0-9_-]+$").matches(offerCode) && offerCode.length <= 110) { "offer code $offerCode" }
        // The link form carries the same code after '#'.
        val answer = createCodeAnswer("https://lobby.example/#$offerCode", options)
        val bad = expectThrows<PeerlinkException.InvalidArgument> { createCodeAnswer(answer.code(), options) }
        check(bad.code == "wrong_code_kind") { "wrong kind ${bad.code}" }
        val (a, b) = coroutineScope {
            val a = async { offer.connect(alice, answer.code()) }
            val b = async { answer.connect(bob) }
            a.await() to b.await()
        }
        check(a.remote().publicKey == bob.publicKey() && b.remote().publicKey == alice.publicKey()) { "remote keys" }
        check(a.transportKind() == "webrtc") { a.transportKind() }
        check(a.call("reverse", byteArrayOf(1, 2)).contentEquals(byteArrayOf(2, 1))) { "call" }
        val again = expectThrows<PeerlinkException.InvalidArgument> { offer.connect(alice, answer.code()) }
        check(again.code == "invalid_state") { again.code }
        // After connect, closing the exchange is a no-op; an unused exchange closes its link.
        offer.closeOffer()
        val unused = createCodeOffer(options)
        unused.closeOffer()
        unused.closeOffer()
        val late = expectThrows<PeerlinkException.InvalidArgument> { unused.connect(alice, answer.code()) }
        check(late.code == "invalid_state") { "connect after close: ${late.code}" }
        alice.shutdown()
        bob.shutdown()
        listOf(a, b, offer, answer, unused, alice, bob).forEach { it.destroy() }
    }

    test("close without leaks: handles freed, foreign objects released, no descriptors left") {
        suspend fun cycle(): WeakReference<Any> {
            val handler = Handler { _, args -> args }
            val ref = WeakReference<Any>(handler)
            val server = node("alice", RecordingTrust(0))
            val client = node("bob")
            server.expose("echo", handler)
            server.setListener(Events())
            val p = connect(server, client)
            check(p.clientConn.call("echo", byteArrayOf(9)).contentEquals(byteArrayOf(9))) { "echo" }
            server.shutdown()
            check(server.isClosed()) { "server not closed" }
            p.shutdown()
            return ref
        }
        cycle() // warm-up: the shared runtime's own descriptors are opened once
        val baseline = openFds()
        val refs = (0 until 20).map { cycle() }
        waitUntil("descriptors to return to $baseline (now ${openFds()})") { openFds() <= baseline }
        waitUntil("Kotlin handlers to be released by Rust") {
            System.gc()
            refs.all { it.get() == null }
        }
    }

    test("trust levels carry the Rust names (TrustLevel::SELF is self)") {
        val levels = trustLevels()
        check(levels.self == 100 && levels.trusted == 50 && levels.newUser == 10 && levels.malicious == -20) { "levels $levels" }
    }

    test("WebRTC link with signals carried in Kotlin: data channels with priorities and options, ICE restart") {
        val alice = node("alice")
        val bob = node("bob")
        bob.expose("echo", Handler { _, args -> args })
        val p = linkPair(alice, bob)
        check(p.a.transportKind() == "webrtc") { p.a.transportKind() }
        check(p.a.call("echo", byteArrayOf(1)).contentEquals(byteArrayOf(1))) { "echo" }

        val priorities = listOf(ChannelPriority.VERY_LOW, ChannelPriority.LOW, ChannelPriority.MEDIUM, ChannelPriority.HIGH)
        val made = priorities.map { p.offerer.createChannel("ch-$it", ChannelOptions(priority = it)) } +
            p.offerer.createChannel("lossy", ChannelOptions(ordered = false, maxRetransmits = 0.toUShort(), priority = ChannelPriority.HIGH)) +
            p.offerer.createChannel("default", ChannelOptions())
        // Channels opened on a running link may arrive in any order: pair them by label.
        val arrived = made.map { p.answerer.acceptChannel() ?: throw AssertionError("a channel did not arrive") }
            .associateBy { it.label() }
        val seen = made.map { arrived[it.label()] ?: throw AssertionError("no ${it.label()} among ${arrived.keys}") }
        check(made.map { it.priority() } == priorities + ChannelPriority.HIGH + ChannelPriority.LOW) { "own priorities" }
        check(seen.map { it.priority() } == made.map { it.priority() }) { "the peer read ${seen.map { it.priority() }}" }
        made.zip(seen).forEach { (mine, theirs) ->
            mine.opened()
            theirs.opened()
            mine.send("to ${mine.label()}".toByteArray())
            check(String(theirs.recv() ?: ByteArray(0)) == "to ${mine.label()}") { "message on ${mine.label()}" }
            theirs.send(byteArrayOf(4, 5))
            check((mine.recv() ?: ByteArray(0)).contentEquals(byteArrayOf(4, 5))) { "reply on ${mine.label()}" }
        }
        val bad = expectThrows<PeerlinkException.InvalidArgument> {
            p.offerer.createChannel("x", ChannelOptions(maxRetransmits = 1.toUShort(), maxPacketLifeTime = 1.toUShort()))
        }
        check(bad.code == "invalid_argument") { bad.code }
        expectThrows<PeerlinkException.InvalidArgument> { p.offerer.createChannel("peerlink", ChannelOptions()) }
        made[0].closeChannel()
        check(seen[0].recv() == null) { "the closed channel's reader did not end" }

        check(p.offerer.iceRestarts() == 0u) { "restarts before" }
        p.offerer.restartIce()
        check(p.offerer.iceRestarts() == 1u) { "restarts after" }
        // One restart at a time: the offerer ignores requests until the restart's answer is in.
        waitUntil("the restart answer") { p.toOfferer.appliedAnswers.get() == 2 }
        p.answerer.restartIce()
        waitUntil("the offerer restarting for the answerer") { p.offerer.iceRestarts() == 2u }
        waitUntil("connected again") { p.offerer.state() == "connected" }
        check(p.a.call("echo", byteArrayOf(2)).contentEquals(byteArrayOf(2))) { "echo after restarts" }
        check(p.a.isOpen()) { "the connection closed" }
        p.offerer.closeLink()
        val closed = expectThrows<PeerlinkException.Closed> { p.offerer.restartIce() }
        check(closed.code == "closed") { closed.code }
        check(p.offerer.acceptChannel() == null) { "a channel after close" }
        p.close()
        (made + seen).forEach { it.destroy() }
        alice.shutdown(); bob.shutdown(); alice.destroy(); bob.destroy()
    }

    test("WebRTC options are checked in Rust: turnTlsRoots as PEM or DER, bad entries named, no relayProtocol on a host pair") {
        val pem = TEST_CA_PEM.toByteArray()
        val der = java.util.Base64.getMimeDecoder()
            .decode(TEST_CA_PEM.lines().filter { !it.startsWith("-----") }.joinToString(""))
        val trusting = WebRtcLink.create(WebRtcRole.OFFERER, WebRtcOptions(bindAddrs = listOf("127.0.0.1:0"), turnTlsRoots = listOf(pem, der)))
        trusting.closeLink()
        trusting.destroy()
        val bad = listOf(
            "garbage" to "not a certificate".toByteArray(),
            "empty" to ByteArray(0),
            "truncated DER" to der.copyOf(40),
            "private key" to "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n".toByteArray(),
        )
        for ((what, entry) in bad) {
            val e = expectThrows<PeerlinkException.InvalidArgument> {
                WebRtcLink.create(WebRtcRole.OFFERER, WebRtcOptions(bindAddrs = listOf("127.0.0.1:0"), turnTlsRoots = listOf(pem, entry)))
            }
            check(e.code == "invalid_argument" && e.detail.contains("turnTlsRoots[1]")) { "$what: ${e.code} ${e.detail}" }
        }
        val addr = expectThrows<PeerlinkException.InvalidArgument> {
            WebRtcLink.create(WebRtcRole.OFFERER, WebRtcOptions(bindAddrs = listOf("127.0.0.1:0", "nowhere")))
        }
        check(addr.code == "invalid_argument" && addr.detail.contains("bindAddrs[1]")) { "${addr.code} ${addr.detail}" }

        val alice = node("alice")
        val bob = node("bob")
        val p = linkPair(alice, bob)
        val path = p.a.path()
        check(path.kind == "webrtc" && path.local?.candidateType == "host") { "path $path" }
        check(path.local?.relayProtocol == null && path.remote?.relayProtocol == null) { "relayProtocol on a host pair: $path" }
        p.close()
        alice.shutdown(); bob.shutdown(); alice.destroy(); bob.destroy()
    }

    test("signaling server: WebRTC by device id, the server relay, hybrid with path changes") {
        SignalingServer().use { server ->
            val alice = signalingPeer(server, "alice")
            val bob = signalingPeer(server, "bob")
            bob.node.expose("kind", Handler { _, _ -> "answered".toByteArray() })
            // Over the relay; bob accepts plain connections first.
            val accepted = async { bob.dialer.accept(bob.node) }
            val relay = alice.dialer.connectRelay(alice.node, bob.deviceId)
            val relayPeer = accepted.await() ?: throw AssertionError("bob accepted nothing")
            check(relay.transportKind() == "relay" && relayPeer.transportKind() == "relay") { relay.transportKind() }
            check(relay.remote().deviceId == bob.deviceId) { "remote ${relay.remote()}" }
            check(String(relay.call("kind", ByteArray(0))) == "answered") { "relay call" }
            // The server has no such device: the same code as a WebRTC dial.
            val offline = expectThrows<PeerlinkException.Protocol> { alice.dialer.connectRelay(alice.node, "nobody") }
            check(offline.code == "target_offline") { offline.code }

            // Hybrid: relay at once, then WebRTC; back to the relay when WebRTC dies. The
            // accepting side keeps an acceptHybrid pending: that is when the WebRTC links of
            // peers it already has are attached to their hybrid connections.
            val acceptedHybrid = ConcurrentLinkedQueue<HybridConnection>()
            val acceptLoop = launch {
                repeat(10) {
                    val next = bob.dialer.acceptHybrid(bob.node) ?: return@launch
                    acceptedHybrid.add(next)
                }
            }
            val h = alice.dialer.connectHybrid(alice.node, bob.deviceId, HybridOptions(retryDelayMs = 100uL, maxWebrtcAttempts = 1u))
            check(h.relay()?.transportKind() == "relay") { "relay path" }
            waitUntil("bob's hybrid connection") { acceptedHybrid.size == 1 }
            val hb = acceptedHybrid.first()
            check(hb.remote().deviceId == alice.node.deviceInfo().deviceId) { "hybrid remote" }
            check(nextPath(h) == "webrtc") { "first path change" }
            check(h.path() == "webrtc" && h.current().transportKind() == "webrtc") { "path ${h.path()}" }
            check(hb.waitForPath("webrtc", 10_000uL)) { "the accepting side stayed on the relay" }
            check(String(h.current().call("kind", ByteArray(0))) == "answered") { "webrtc call" }
            (h.webrtc() ?: throw AssertionError("no webrtc connection")).closeConnection("test")
            check(nextPath(h) == "relay") { "second path change" }
            check(h.webrtc() == null && h.current().transportKind() == "relay") { "back on the relay" }
            check(String(h.current().call("kind", ByteArray(0))) == "answered") { "relay call after WebRTC died" }
            val badPath = expectThrows<PeerlinkException.InvalidArgument> { h.waitForPath("pigeon", 10uL) }
            check(badPath.code == "invalid_argument") { badPath.code }
            val plain = expectThrows<PeerlinkException.InvalidArgument> { bob.dialer.accept(bob.node) }
            check(plain.code == "invalid_state") { plain.code }
            h.closeHybrid(null)
            check(!h.isOpen()) { "still open after close" }
            check(nextPath(h) == null) { "path events after close" }
            alice.close()
            bob.close()
            withTimeout(10_000) { acceptLoop.join() }
            check(acceptedHybrid.size == 1) { "one peer, one hybrid connection: ${acceptedHybrid.size}" }
            listOf(relay, relayPeer, h, hb).forEach { it.destroy() }
        }
    }

    println("$passed passed, $failed failed")
}

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

    println("$passed passed, $failed failed")
}

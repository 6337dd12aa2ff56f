/*
 * Proves the C ABI that the generated Swift uses, on a machine without Swift: compiled against
 * the generated header peerlink_ffiFFI.h and linked to the Linux library. Checks the contract
 * version and every checksum the Swift file expects (checksums.inc is extracted from
 * PeerLink.swift at test time), makes real calls through the scaffolding with the RustBuffer
 * ABI Swift uses (lowering strings and byte arrays, lifting strings, byte arrays and errors),
 * and takes an error path.
 *
 * Prints "N passed, N failed" last; exits 1 when anything failed.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "peerlink_ffiFFI.h"

#ifndef EXPECTED_CONTRACT_VERSION
#error "build with -DEXPECTED_CONTRACT_VERSION=<the bindings_contract_version in PeerLink.swift>"
#endif

enum { CALL_SUCCESS = 0, CALL_ERROR = 1, CALL_UNEXPECTED_ERROR = 2 };

/* PeerlinkError variants are serialized with a 1-based big-endian i32 index, in declaration
 * order (ffi/src/error.rs). */
enum { VARIANT_INVALID_ARGUMENT = 11 };

static int passed, failed;

#define CHECK(cond, ...)                                   \
    do {                                                   \
        if (cond) {                                        \
            passed++;                                      \
        } else {                                           \
            failed++;                                      \
            printf("FAIL %s:%d: ", __FILE__, __LINE__);    \
            printf(__VA_ARGS__);                           \
            printf("\n");                                  \
        }                                                  \
    } while (0)

struct checksum {
    const char *name;
    uint16_t (*fn)(void);
    uint16_t expected;
};

static const struct checksum checksums[] = {
#include "checksums.inc"
};

static RustCallStatus status(void) {
    RustCallStatus s;
    memset(&s, 0, sizeof s);
    return s;
}

/* A top-level String argument is lowered as its raw UTF-8 bytes in a Rust-owned buffer. */
static RustBuffer lower_string(const char *text) {
    RustCallStatus s = status();
    ForeignBytes bytes = {(int32_t)strlen(text), (const uint8_t *)text};
    RustBuffer buf = ffi_peerlink_ffi_rustbuffer_from_bytes(bytes, &s);
    if (s.code != CALL_SUCCESS) {
        printf("rustbuffer_from_bytes failed\n");
        exit(1);
    }
    return buf;
}

/* A top-level Vec<u8> argument is a big-endian i32 length followed by the bytes. */
static RustBuffer lower_bytes(const uint8_t *data, int32_t len) {
    uint8_t *tmp = malloc((size_t)len + 4);
    if (!tmp) exit(1);
    tmp[0] = (uint8_t)(len >> 24);
    tmp[1] = (uint8_t)(len >> 16);
    tmp[2] = (uint8_t)(len >> 8);
    tmp[3] = (uint8_t)len;
    memcpy(tmp + 4, data, (size_t)len);
    RustCallStatus s = status();
    ForeignBytes bytes = {len + 4, tmp};
    RustBuffer buf = ffi_peerlink_ffi_rustbuffer_from_bytes(bytes, &s);
    free(tmp);
    if (s.code != CALL_SUCCESS) exit(1);
    return buf;
}

/* Lifts a top-level String result (raw UTF-8) into a C string and frees the buffer. */
static char *lift_string(RustBuffer buf) {
    char *out = malloc((size_t)buf.len + 1);
    if (!out) exit(1);
    if (buf.len) memcpy(out, buf.data, (size_t)buf.len);
    out[buf.len] = 0;
    RustCallStatus s = status();
    ffi_peerlink_ffi_rustbuffer_free(buf, &s);
    return out;
}

static int32_t read_i32(const uint8_t *p) {
    return (int32_t)(((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3]);
}

static uint64_t clone_identity(uint64_t handle) {
    RustCallStatus s = status();
    uint64_t clone = uniffi_peerlink_ffi_fn_clone_identity(handle, &s);
    CHECK(s.code == CALL_SUCCESS, "clone_identity failed");
    return clone;
}

static void free_identity(uint64_t handle) {
    RustCallStatus s = status();
    uniffi_peerlink_ffi_fn_free_identity(handle, &s);
    CHECK(s.code == CALL_SUCCESS, "free_identity failed");
}

/* Methods consume one reference, as the Swift code does with uniffiCloneHandle(). */
static char *identity_string(uint64_t handle, RustBuffer (*method)(uint64_t, RustCallStatus *)) {
    RustCallStatus s = status();
    RustBuffer buf = method(clone_identity(handle), &s);
    CHECK(s.code == CALL_SUCCESS, "identity method failed with status %d", s.code);
    return lift_string(buf);
}

int main(void) {
    /* Contract version: the one PeerLink.swift was generated for. */
    uint32_t contract = ffi_peerlink_ffi_uniffi_contract_version();
    CHECK(contract == EXPECTED_CONTRACT_VERSION, "contract version %u, Swift expects %d", contract,
          EXPECTED_CONTRACT_VERSION);

    /* Every API checksum the Swift file verifies at load time. */
    size_t n = sizeof checksums / sizeof checksums[0];
    CHECK(n > 50, "only %zu checksums extracted from PeerLink.swift", n);
    for (size_t i = 0; i < n; i++) {
        uint16_t got = checksums[i].fn();
        CHECK(got == checksums[i].expected, "%s: library %u, Swift expects %u", checksums[i].name, got,
              checksums[i].expected);
    }

    /* A free function returning a String. */
    {
        RustCallStatus s = status();
        char *version = lift_string(uniffi_peerlink_ffi_fn_func_version(&s));
        CHECK(s.code == CALL_SUCCESS && strcmp(version, EXPECTED_VERSION) == 0, "version() = %s", version);
        free(version);
    }

    /* Objects: generate an identity, read its keys, rebuild it from the secret key. */
    {
        RustCallStatus s = status();
        uint64_t id = uniffi_peerlink_ffi_fn_constructor_identity_generate(&s);
        CHECK(s.code == CALL_SUCCESS && id != 0, "generate failed");
        char *pk = identity_string(id, uniffi_peerlink_ffi_fn_method_identity_public_key);
        char *sk = identity_string(id, uniffi_peerlink_ffi_fn_method_identity_secret_key);
        CHECK(strlen(pk) == 44 && pk[43] == '=', "public key %s is not 32 bytes of base64", pk);
        CHECK(strlen(sk) == 88, "secret key is not 64 bytes of base64 (%zu chars)", strlen(sk));

        s = status();
        uint64_t again = uniffi_peerlink_ffi_fn_constructor_identity_from_secret_key(lower_string(sk), &s);
        CHECK(s.code == CALL_SUCCESS, "from_secret_key failed with status %d", s.code);
        char *pk2 = identity_string(again, uniffi_peerlink_ffi_fn_method_identity_public_key);
        CHECK(strcmp(pk, pk2) == 0, "public keys differ: %s vs %s", pk, pk2);

        /* A byte-array argument and result: a 64-byte signature, length-prefixed. */
        const uint8_t message[] = "hello";
        s = status();
        RustBuffer sig = uniffi_peerlink_ffi_fn_method_identity_sign(clone_identity(id), lower_bytes(message, 5), &s);
        CHECK(s.code == CALL_SUCCESS && sig.len == 68 && read_i32(sig.data) == 64,
              "signature buffer of %llu bytes", (unsigned long long)sig.len);
        s = status();
        ffi_peerlink_ffi_rustbuffer_free(sig, &s);

        free(pk);
        free(pk2);
        free(sk);
        free_identity(again);
        free_identity(id);
    }

    /* The error path: an invalid secret key fails with PeerlinkError.InvalidArgument whose
     * code is "invalid_identity", serialized into the status' error buffer. */
    {
        RustCallStatus s = status();
        uint64_t id = uniffi_peerlink_ffi_fn_constructor_identity_from_secret_key(lower_string("not a key"), &s);
        CHECK(s.code == CALL_ERROR, "status %d, expected CALL_ERROR", s.code);
        CHECK(id == 0, "a handle came back with the error");
        const uint8_t *p = s.errorBuf.data;
        CHECK(s.errorBuf.len > 8 && read_i32(p) == VARIANT_INVALID_ARGUMENT, "error variant %d",
              s.errorBuf.len > 4 ? read_i32(p) : -1);
        if (s.errorBuf.len > 8) {
            int32_t code_len = read_i32(p + 4);
            CHECK(code_len == 16 && (uint64_t)code_len + 8 <= s.errorBuf.len &&
                      memcmp(p + 8, "invalid_identity", 16) == 0,
                  "error code of %d bytes", code_len);
        }
        RustCallStatus f = status();
        ffi_peerlink_ffi_rustbuffer_free(s.errorBuf, &f);

        /* A seed of the wrong size takes the same path. */
        const uint8_t short_seed[3] = {1, 2, 3};
        s = status();
        uniffi_peerlink_ffi_fn_constructor_identity_from_seed(lower_bytes(short_seed, 3), &s);
        CHECK(s.code == CALL_ERROR && read_i32(s.errorBuf.data) == VARIANT_INVALID_ARGUMENT,
              "short seed: status %d", s.code);
        f = status();
        ffi_peerlink_ffi_rustbuffer_free(s.errorBuf, &f);
    }

    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}

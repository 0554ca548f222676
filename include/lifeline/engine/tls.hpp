// TLS for any of lifeline's wires, sans-IO: OpenSSL 3 driven through a pair of
// memory BIOs, so ciphertext goes in and out as bytes and the sessions above
// it (framed, raw, WebSocket) see plaintext. A TlsContext holds the
// certificate and key (loaded once, checked at start-up); a TlsStream is one
// connection's state.
//
//   TlsStream tls(context);
//   tls.receive(ciphertext, plaintext);      // bytes read from the socket
//   session.receive(plaintext, now);
//   tls.send(session_output);                // what the session wants to write
//   write_all(fd, tls.take_ciphertext());    // after each of the two above
//
// Threads: a context may be shared by any threads once loaded (OpenSSL's
// SSL_CTX is safe for that); a stream is used by one thread at a time.
// Errors: load() names the file and OpenSSL's reason; receive() fails on a
// broken handshake or record (the message is OpenSSL's), and the connection
// is then to be closed as a protocol error.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "lifeline/result.hpp"

namespace lifeline {

class TlsContext {
public:
    // A server context: PEM certificate chain and private key; the key must
    // match the certificate. TLS 1.2 and 1.3 only.
    static Result<std::shared_ptr<TlsContext>> load_server(const std::string& cert_file, const std::string& key_file);
    // A client context that verifies the server's certificate chain against
    // `ca_file` (PEM), or the system's trust store when it is empty. TLS 1.2
    // and 1.3 only. Errors name the file.
    static Result<std::shared_ptr<TlsContext>> load_client(const std::string& ca_file);
    ~TlsContext();
    TlsContext(const TlsContext&) = delete;
    TlsContext& operator=(const TlsContext&) = delete;
    void* native() const { return ctx_; }  // SSL_CTX*

private:
    explicit TlsContext(void* ctx) : ctx_(ctx) {}
    void* ctx_;
};

class TlsStream {
public:
    // A server's stream (the peer starts the handshake).
    explicit TlsStream(const TlsContext& context);
    // A client's stream for `server_name` (a host name or an IP address): sent
    // as SNI (names only), and the certificate must be for it. The
    // ClientHello is ready at once (take_ciphertext()).
    TlsStream(const TlsContext& context, const std::string& server_name);
    ~TlsStream();
    TlsStream(const TlsStream&) = delete;
    TlsStream& operator=(const TlsStream&) = delete;

    // Ciphertext from the peer in; decrypted application bytes appended to
    // `plaintext`. Handshake records produce output (take_ciphertext()).
    Result<void> receive(std::span<const std::uint8_t> ciphertext, std::vector<std::uint8_t>& plaintext);
    // Plaintext to protect; before the handshake is done it waits inside, up
    // to kMaxPendingBeforeHandshake bytes (more is an error: a peer that
    // stalls its handshake must not make us buffer without end).
    Result<void> send(std::span<const std::uint8_t> plaintext);
    static constexpr std::size_t kMaxPendingBeforeHandshake = 256 * 1024;
    // Ciphertext ready for the peer (moves it out).
    std::vector<std::uint8_t> take_ciphertext();
    bool handshake_done() const;
    // A close_notify alert for the peer (then take_ciphertext()).
    void shutdown();

private:
    Result<void> pump_handshake();
    Result<void> flush_pending();
    void* ssl_ = nullptr;                // SSL*
    void* in_ = nullptr;                 // BIO*: ciphertext from the peer
    void* out_ = nullptr;                // BIO*: ciphertext for the peer
    std::vector<std::uint8_t> pending_;  // Plaintext sent before the handshake finished.
};

}  // namespace lifeline

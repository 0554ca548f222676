// TlsContext and TlsStream: OpenSSL through memory BIOs (see tls.hpp).
#include "lifeline/engine/tls.hpp"

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "lifeline/check.hpp"

namespace lifeline {

namespace {

// OpenSSL's queued errors, oldest first, as one sentence; the queue is emptied.
std::string openssl_errors() {
    std::string out;
    while (const unsigned long e = ERR_get_error()) {
        char buf[256];
        ERR_error_string_n(e, buf, sizeof(buf));
        if (!out.empty()) out += "; ";
        out += buf;
    }
    return out.empty() ? "unknown OpenSSL error" : out;
}

SSL* as_ssl(void* p) { return static_cast<SSL*>(p); }
BIO* as_bio(void* p) { return static_cast<BIO*>(p); }

}  // namespace

Result<std::shared_ptr<TlsContext>> TlsContext::load_server(const std::string& cert_file, const std::string& key_file) {
    ERR_clear_error();
    SSL_CTX* ctx = SSL_CTX_new(TLS_server_method());
    if (ctx == nullptr) return Error{"TLS: cannot create a context: " + openssl_errors()};
    auto context = std::shared_ptr<TlsContext>(new TlsContext(ctx));
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    // No SSL_MODE_ENABLE_PARTIAL_WRITE: into a memory BIO, SSL_write takes all
    // of a large write in one call (one record per 16 KiB) instead of one record.
    // RELEASE_BUFFERS: an idle connection gives its 16 KiB+ record buffers back
    // (measured at 19,000 idle wss:// connections: docs/BENCHMARKS.md).
    SSL_CTX_set_mode(ctx, SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER | SSL_MODE_RELEASE_BUFFERS);
    if (SSL_CTX_use_certificate_chain_file(ctx, cert_file.c_str()) != 1)
        return Error{"--tls-cert " + cert_file + ": " + openssl_errors()};
    // A key of another certificate fails here already ("key values mismatch").
    if (SSL_CTX_use_PrivateKey_file(ctx, key_file.c_str(), SSL_FILETYPE_PEM) != 1)
        return Error{"--tls-key " + key_file + " (for --tls-cert " + cert_file + "): " + openssl_errors()};
    if (SSL_CTX_check_private_key(ctx) != 1)
        return Error{"--tls-key " + key_file + " does not match --tls-cert " + cert_file + ": " + openssl_errors()};
    return context;
}

Result<std::shared_ptr<TlsContext>> TlsContext::load_client(const std::string& ca_file) {
    ERR_clear_error();
    SSL_CTX* ctx = SSL_CTX_new(TLS_client_method());
    if (ctx == nullptr) return Error{"TLS: cannot create a context: " + openssl_errors()};
    auto context = std::shared_ptr<TlsContext>(new TlsContext(ctx));
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_mode(ctx, SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER | SSL_MODE_RELEASE_BUFFERS);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, nullptr);
    if (ca_file.empty()) {
        if (SSL_CTX_set_default_verify_paths(ctx) != 1)
            return Error{"TLS: cannot load the system's trust store: " + openssl_errors()};
    } else if (SSL_CTX_load_verify_locations(ctx, ca_file.c_str(), nullptr) != 1) {
        return Error{"--tls-ca " + ca_file + ": " + openssl_errors()};
    }
    return context;
}

TlsContext::~TlsContext() { SSL_CTX_free(static_cast<SSL_CTX*>(ctx_)); }

TlsStream::TlsStream(const TlsContext& context) {
    SSL* ssl = SSL_new(static_cast<SSL_CTX*>(context.native()));
    LIFELINE_CHECK(ssl != nullptr, "SSL_new failed (out of memory)");
    BIO* in = BIO_new(BIO_s_mem());
    BIO* out = BIO_new(BIO_s_mem());
    BIO_set_mem_eof_return(in, -1);  // An empty input BIO means "no more yet", not end of stream.
    SSL_set_bio(ssl, in, out);       // The SSL owns both BIOs now.
    SSL_set_accept_state(ssl);
    ssl_ = ssl;
    in_ = in;
    out_ = out;
}

TlsStream::TlsStream(const TlsContext& context, const std::string& server_name) : TlsStream(context) {
    SSL* ssl = as_ssl(ssl_);
    SSL_set_connect_state(ssl);
    X509_VERIFY_PARAM* param = SSL_get0_param(ssl);
    // An address is checked against the certificate's IP SANs; a name is sent
    // as SNI (RFC 6066 3: never an address) and checked against its DNS SANs.
    if (X509_VERIFY_PARAM_set1_ip_asc(param, server_name.c_str()) != 1) {
        SSL_set_tlsext_host_name(ssl, server_name.c_str());
        SSL_set1_host(ssl, server_name.c_str());
    }
    ERR_clear_error();
    SSL_do_handshake(ssl);  // Writes the ClientHello into the output BIO; WANT_READ follows.
}

TlsStream::~TlsStream() { SSL_free(as_ssl(ssl_)); }

bool TlsStream::handshake_done() const { return SSL_is_init_finished(as_ssl(ssl_)) == 1; }

Result<void> TlsStream::pump_handshake() {
    if (handshake_done()) return {};
    ERR_clear_error();
    const int r = SSL_do_handshake(as_ssl(ssl_));
    if (r == 1) return flush_pending();
    const int e = SSL_get_error(as_ssl(ssl_), r);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) return {};
    const long verify = SSL_get_verify_result(as_ssl(ssl_));
    if (verify != X509_V_OK)
        return Error{std::string("TLS handshake failed: the peer's certificate: ") +
                     X509_verify_cert_error_string(verify)};
    return Error{"TLS handshake failed: " + openssl_errors()};
}

Result<void> TlsStream::receive(std::span<const std::uint8_t> ciphertext, std::vector<std::uint8_t>& plaintext) {
    if (!ciphertext.empty() && BIO_write(as_bio(in_), ciphertext.data(), static_cast<int>(ciphertext.size())) <= 0)
        return Error{"TLS: cannot buffer input"};
    if (auto h = pump_handshake(); !h) return h;
    if (!handshake_done()) return {};
    std::uint8_t buf[16384];
    while (true) {
        ERR_clear_error();
        const int n = SSL_read(as_ssl(ssl_), buf, sizeof(buf));
        if (n > 0) {
            plaintext.insert(plaintext.end(), buf, buf + n);
            continue;
        }
        const int e = SSL_get_error(as_ssl(ssl_), n);
        if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) return {};
        if (e == SSL_ERROR_ZERO_RETURN) return {};  // close_notify: the TCP end follows.
        return Error{"TLS record error: " + openssl_errors()};
    }
}

Result<void> TlsStream::send(std::span<const std::uint8_t> plaintext) {
    if (plaintext.empty()) return {};
    if (!handshake_done() && pending_.size() + plaintext.size() > kMaxPendingBeforeHandshake)
        return Error{"TLS: more than " + std::to_string(kMaxPendingBeforeHandshake) +
                     " bytes to send before the peer finished its handshake"};
    if (!handshake_done() || !pending_.empty()) {
        pending_.insert(pending_.end(), plaintext.begin(), plaintext.end());
        return handshake_done() ? flush_pending() : Result<void>();
    }
    ERR_clear_error();
    // Memory BIOs grow as needed: one call takes it all.
    const int n = SSL_write(as_ssl(ssl_), plaintext.data(), static_cast<int>(plaintext.size()));
    if (n != static_cast<int>(plaintext.size())) return Error{"TLS write failed: " + openssl_errors()};
    return {};
}

Result<void> TlsStream::flush_pending() {
    if (pending_.empty()) return {};
    std::vector<std::uint8_t> pending = std::move(pending_);
    pending_ = {};
    return send(pending);
}

std::vector<std::uint8_t> TlsStream::take_ciphertext() {
    std::vector<std::uint8_t> out(static_cast<std::size_t>(BIO_ctrl_pending(as_bio(out_))));
    if (!out.empty()) BIO_read(as_bio(out_), out.data(), static_cast<int>(out.size()));
    return out;
}

void TlsStream::shutdown() {
    if (handshake_done()) SSL_shutdown(as_ssl(ssl_));
}

}  // namespace lifeline

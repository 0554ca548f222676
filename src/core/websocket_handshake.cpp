// The opening handshake (RFC 6455 section 4): an HTTP/1.1 upgrade request
// in, a 101 response (or an HTTP error) out. SHA-1 and base64 are OpenSSL's.
#include <openssl/evp.h>
#include <openssl/sha.h>

#include <algorithm>
#include <array>
#include <cctype>

#include "lifeline/engine/websocket.hpp"

namespace lifeline::ws {

namespace {

constexpr std::string_view kGuid = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";  // RFC 6455 1.3

std::string lower(std::string_view s) {
    std::string out(s);
    std::transform(out.begin(), out.end(), out.begin(), [](unsigned char c) { return std::tolower(c); });
    return out;
}

std::string_view trim(std::string_view s) {
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
    while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
    return s;
}

// Whether comma-separated `list` holds `token` (case-insensitive).
bool has_token(std::string_view list, std::string_view token) {
    while (!list.empty()) {
        const std::size_t comma = list.find(',');
        if (lower(trim(list.substr(0, comma))) == token) return true;
        if (comma == std::string_view::npos) break;
        list.remove_prefix(comma + 1);
    }
    return false;
}

// 24 base64 characters that decode to 16 bytes (RFC 6455 4.1).
bool valid_key(std::string_view key) {
    if (key.size() != 24 || key.substr(22) != "==") return false;
    return std::all_of(key.begin(), key.begin() + 22,
                       [](char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '+' || c == '/'; });
}

using Headers = std::vector<std::pair<std::string, std::string>>;

std::optional<std::string> find_header(const Headers& headers, std::string_view name) {
    for (const auto& [n, v] : headers) {
        if (n == name) return v;
    }
    return std::nullopt;
}

// The header lines after the start line ("Name: value", CRLF-separated) into
// `out`, names lower-cased; "" or why they are malformed (and the status).
std::pair<int, std::string> parse_header_lines(std::string_view rest, Headers& out) {
    while (!rest.empty()) {
        const std::size_t eol = rest.find("\r\n");
        const std::string_view line = rest.substr(0, eol);
        const std::size_t colon = line.find(':');
        if (colon == std::string_view::npos || colon == 0) return {400, "malformed header line"};
        out.emplace_back(lower(line.substr(0, colon)), std::string(trim(line.substr(colon + 1))));
        if (out.size() > 100) return {431, "more than 100 headers"};
        if (eol == std::string_view::npos) break;
        rest.remove_prefix(eol + 2);
    }
    return {0, ""};
}

UpgradeParse invalid(int status, std::string why) {
    UpgradeParse p;
    p.status = status;
    p.error = std::move(why);
    return p;
}

UpgradeParse check(Upgrade u, std::size_t consumed) {
    const auto need = [&](std::string_view name) { return u.header(name).value_or(""); };
    if (u.header("host") == std::nullopt) return invalid(400, "no Host header");
    if (!has_token(need("upgrade"), "websocket")) return invalid(400, "not a WebSocket upgrade (Upgrade: websocket)");
    if (!has_token(need("connection"), "upgrade")) return invalid(400, "no Connection: Upgrade");
    if (trim(need("sec-websocket-version")) != "13") return invalid(426, "Sec-WebSocket-Version must be 13");
    u.key = std::string(trim(need("sec-websocket-key")));
    if (!valid_key(u.key)) return invalid(400, "Sec-WebSocket-Key is not 16 bytes of base64");
    UpgradeParse p;
    p.upgrade = std::move(u);
    p.consumed = consumed;
    return p;
}

// RFC 3986 percent-decoding, and '+' as a space (form encoding); a broken
// escape is kept as it is.
std::string percent_decoded(std::string_view s) {
    std::string out;
    for (std::size_t i = 0; i < s.size(); ++i) {
        if (s[i] == '+') {
            out += ' ';
        } else if (s[i] == '%' && i + 2 < s.size() && std::isxdigit(static_cast<unsigned char>(s[i + 1])) &&
                   std::isxdigit(static_cast<unsigned char>(s[i + 2]))) {
            out += static_cast<char>(std::stoi(std::string(s.substr(i + 1, 2)), nullptr, 16));
            i += 2;
        } else {
            out += s[i];
        }
    }
    return out;
}

}  // namespace

std::string Upgrade::query(std::string_view name) const {
    const std::size_t q = target.find('?');
    if (q == std::string::npos) return {};
    std::string_view rest = std::string_view(target).substr(q + 1);
    while (!rest.empty()) {
        const std::size_t amp = rest.find('&');
        const std::string_view pair = rest.substr(0, amp);
        const std::size_t eq = pair.find('=');
        if (pair.substr(0, eq) == name) return eq == std::string_view::npos ? "" : percent_decoded(pair.substr(eq + 1));
        if (amp == std::string_view::npos) break;
        rest.remove_prefix(amp + 1);
    }
    return {};
}

std::optional<std::string> Upgrade::header(std::string_view name) const { return find_header(headers, name); }

UpgradeParse parse_upgrade(std::string_view buffer, std::size_t max_size) {
    const std::size_t end = buffer.find("\r\n\r\n");
    if (end == std::string_view::npos) {
        if (buffer.size() > max_size)
            return invalid(431, "request headers longer than " + std::to_string(max_size) + " bytes");
        return {};
    }
    if (end + 4 > max_size) return invalid(431, "request headers longer than " + std::to_string(max_size) + " bytes");
    std::string_view head = buffer.substr(0, end);
    const std::size_t line_end = head.find("\r\n");
    const std::string_view request_line = head.substr(0, line_end);
    // "GET <target> HTTP/1.1" (RFC 6455 4.1: GET, HTTP/1.1 or later).
    const std::size_t sp1 = request_line.find(' ');
    const std::size_t sp2 = request_line.rfind(' ');
    if (sp1 == std::string_view::npos || sp2 == sp1) return invalid(400, "malformed request line");
    if (request_line.substr(0, sp1) != "GET") return invalid(400, "the method must be GET");
    const std::string_view version = request_line.substr(sp2 + 1);
    if (version != "HTTP/1.1") return invalid(400, "the version must be HTTP/1.1");
    Upgrade u;
    u.target = std::string(request_line.substr(sp1 + 1, sp2 - sp1 - 1));
    if (u.target.empty() || u.target.front() != '/') return invalid(400, "the target must start with /");
    std::string_view rest = line_end == std::string_view::npos ? std::string_view() : head.substr(line_end + 2);
    if (auto [status, why] = parse_header_lines(rest, u.headers); status != 0) return invalid(status, why);
    return check(std::move(u), end + 4);
}

std::string accept_key(std::string_view key) {
    std::string input(key);
    input += kGuid;
    std::array<unsigned char, SHA_DIGEST_LENGTH> digest{};
    unsigned int size = 0;
    EVP_Digest(input.data(), input.size(), digest.data(), &size, EVP_sha1(), nullptr);
    std::array<unsigned char, 4 * ((SHA_DIGEST_LENGTH + 2) / 3) + 1> text{};
    const int n = EVP_EncodeBlock(text.data(), digest.data(), static_cast<int>(size));
    return std::string(reinterpret_cast<const char*>(text.data()), static_cast<std::size_t>(n));
}

std::string switching_protocols(std::string_view key) { return switching_protocols(key, ""); }

std::string switching_protocols(std::string_view key, std::string_view resume_token) {
    std::string out =
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Accept: " +
        accept_key(key) + "\r\n";
    if (!resume_token.empty()) out += "Lifeline-Resume-Token: " + to_hex(resume_token) + "\r\n";
    return out + "\r\n";
}

std::string client_key(const std::array<std::uint8_t, 16>& nonce) {
    std::array<unsigned char, 25> text{};
    const int n = EVP_EncodeBlock(text.data(), nonce.data(), static_cast<int>(nonce.size()));
    return std::string(reinterpret_cast<const char*>(text.data()), static_cast<std::size_t>(n));
}

std::string with_query(std::string_view target, std::string_view name, std::string_view value) {
    static constexpr char kDigits[] = "0123456789ABCDEF";
    std::string out(target);
    out += target.find('?') == std::string_view::npos ? '?' : '&';
    out += name;
    out += '=';
    for (const char c : value) {
        const auto u = static_cast<unsigned char>(c);
        if (std::isalnum(u) || c == '-' || c == '.' || c == '_' || c == '~') {
            out += c;
        } else {
            out += '%';
            out += kDigits[u >> 4];
            out += kDigits[u & 0x0F];
        }
    }
    return out;
}

std::string upgrade_request(std::string_view host, std::string_view target, std::string_view key) {
    std::string out = "GET ";
    out += target.empty() ? std::string_view("/") : target;
    out += " HTTP/1.1\r\nHost: ";
    out += host;
    out += "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: ";
    out += key;
    out += "\r\nSec-WebSocket-Version: 13\r\n\r\n";
    return out;
}

std::optional<std::string> UpgradeResponse::header(std::string_view name) const { return find_header(headers, name); }

UpgradeResponse parse_upgrade_response(std::string_view buffer, std::string_view key, std::size_t max_size) {
    UpgradeResponse r;
    const std::size_t end = buffer.find("\r\n\r\n");
    if (end == std::string_view::npos || end + 4 > max_size) {
        if (buffer.size() > max_size || end != std::string_view::npos) {
            r.complete = true;
            r.error = "response headers longer than " + std::to_string(max_size) + " bytes";
        }
        return r;
    }
    r.complete = true;
    r.consumed = end + 4;
    const std::string_view head = buffer.substr(0, end);
    const std::size_t line_end = head.find("\r\n");
    const std::string_view status_line = head.substr(0, line_end);
    // "HTTP/1.1 101 Switching Protocols"
    if (status_line.size() < 12 || status_line.substr(0, 9) != "HTTP/1.1 ") {
        r.error = "not an HTTP/1.1 response: " + std::string(status_line.substr(0, 80));
        return r;
    }
    const std::string_view code = status_line.substr(9, 3);
    if (!std::all_of(code.begin(), code.end(), [](char c) { return c >= '0' && c <= '9'; })) {
        r.error = "malformed status line: " + std::string(status_line.substr(0, 80));
        return r;
    }
    r.status = std::stoi(std::string(code));
    std::string_view rest = line_end == std::string_view::npos ? std::string_view() : head.substr(line_end + 2);
    if (auto [status, why] = parse_header_lines(rest, r.headers); status != 0) {
        r.error = "HTTP " + std::to_string(r.status) + " with " + why;
        return r;
    }
    if (r.status != 101) {
        r.error = "HTTP " + std::string(trim(status_line.substr(9)));
        return r;
    }
    if (!has_token(r.header("upgrade").value_or(""), "websocket")) {
        r.error = "101 without Upgrade: websocket";
    } else if (!has_token(r.header("connection").value_or(""), "upgrade")) {
        r.error = "101 without Connection: Upgrade";
    } else if (r.header("sec-websocket-accept").value_or("") != accept_key(key)) {
        r.error = "101 with a wrong Sec-WebSocket-Accept (RFC 6455 4.2.2)";
    } else {
        r.accepted = true;
    }
    return r;
}

std::string to_hex(std::string_view bytes) {
    static constexpr char kDigits[] = "0123456789abcdef";
    std::string out;
    for (const char c : bytes) {
        out += kDigits[static_cast<unsigned char>(c) >> 4];
        out += kDigits[static_cast<unsigned char>(c) & 0x0F];
    }
    return out;
}

std::string from_hex(std::string_view hex) {
    const auto value = [](char c) -> int {
        if (c >= '0' && c <= '9') return c - '0';
        if (c >= 'a' && c <= 'f') return c - 'a' + 10;
        if (c >= 'A' && c <= 'F') return c - 'A' + 10;
        return -1;
    };
    if (hex.size() % 2 != 0) return {};
    std::string out;
    for (std::size_t i = 0; i < hex.size(); i += 2) {
        const int hi = value(hex[i]);
        const int lo = value(hex[i + 1]);
        if (hi < 0 || lo < 0) return {};
        out += static_cast<char>(hi * 16 + lo);
    }
    return out;
}

std::string http_error(int status, std::string_view why, std::string_view extra_headers) {
    const std::string_view text = status == 426   ? "Upgrade Required"
                                  : status == 431 ? "Request Header Fields Too Large"
                                  : status == 408 ? "Request Timeout"
                                  : status == 403 ? "Forbidden"
                                                  : "Bad Request";
    std::string body(why);
    body += "\n";
    std::string out = "HTTP/1.1 " + std::to_string(status) + " " + std::string(text) + "\r\n";
    if (status == 426) out += "Sec-WebSocket-Version: 13\r\n";
    out += extra_headers;
    out += "Content-Type: text/plain\r\nConnection: close\r\nContent-Length: " + std::to_string(body.size()) +
           "\r\n\r\n" + body;
    return out;
}

}  // namespace lifeline::ws

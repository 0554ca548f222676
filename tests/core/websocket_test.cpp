// RFC 6455 pieces on their own: the accept key (the RFC's own example),
// client frames in and server frames out, UTF-8, close codes, and the upgrade
// request parser with the HTTP status each kind of bad request gets.
#include "lifeline/engine/websocket.hpp"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "websocket_client_frames.hpp"

namespace lifeline::ws {
namespace {

using testing_ws::masked;

std::span<const std::uint8_t> span_of(const std::vector<std::uint8_t>& v) { return v; }

TEST(WebSocketHandshake, AcceptKeyIsTheRfcsExample) {
    // RFC 6455 section 1.3.
    EXPECT_EQ(accept_key("dGhlIHNhbXBsZSBub25jZQ=="), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    EXPECT_NE(
        switching_protocols("dGhlIHNhbXBsZSBub25jZQ==").find("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo="),
        std::string::npos);
}

const std::string kGood =
    "GET /chat?id=device-7&x=1 HTTP/1.1\r\nHost: example\r\nUpgrade: WebSocket\r\nConnection: keep-alive, Upgrade\r\n"
    "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n";

TEST(WebSocketHandshake, AGoodRequestParsesWithItsQueryAndHeaders) {
    const UpgradeParse p = parse_upgrade(kGood + "extra", 8192);
    ASSERT_TRUE(p.upgrade) << p.error;
    EXPECT_EQ(p.consumed, kGood.size());
    EXPECT_EQ(p.upgrade->target, "/chat?id=device-7&x=1");
    EXPECT_EQ(p.upgrade->query("id"), "device-7");
    EXPECT_EQ(p.upgrade->query("x"), "1");
    EXPECT_EQ(p.upgrade->query("missing"), "");
    Upgrade encoded;
    encoded.target = "/?token=a%2Bb%3D%3d+c&bad=%zz";
    EXPECT_EQ(encoded.query("token"), "a+b== c") << "percent-decoded, as encodeURIComponent makes it";
    EXPECT_EQ(encoded.query("bad"), "%zz");
    EXPECT_EQ(p.upgrade->header("host"), "example");
    EXPECT_EQ(p.upgrade->key, "dGhlIHNhbXBsZSBub25jZQ==");
}

TEST(WebSocketHandshake, AnIncompleteRequestAsksForMore) {
    const UpgradeParse p = parse_upgrade(kGood.substr(0, kGood.size() - 2), 8192);
    EXPECT_FALSE(p.upgrade);
    EXPECT_EQ(p.status, 0);
}

TEST(WebSocketHandshake, EachBadRequestGetsItsStatus) {
    const auto status_of = [](const std::string& request) { return parse_upgrade(request, 8192).status; };
    auto replace = [&](const std::string& from, const std::string& to) {
        std::string r = kGood;
        r.replace(r.find(from), from.size(), to);
        return r;
    };
    EXPECT_EQ(status_of(replace("GET", "POST")), 400);
    EXPECT_EQ(status_of(replace("HTTP/1.1", "HTTP/1.0")), 400);
    EXPECT_EQ(status_of(replace("Upgrade: WebSocket", "Upgrade: h2c")), 400);
    EXPECT_EQ(status_of(replace("keep-alive, Upgrade", "close")), 400);
    EXPECT_EQ(status_of(replace("Version: 13", "Version: 8")), 426);
    EXPECT_EQ(status_of(replace("dGhlIHNhbXBsZSBub25jZQ==", "short")), 400);
    EXPECT_EQ(status_of(replace("Host: example\r\n", "")), 400);
    EXPECT_EQ(status_of(replace("Host: example", "no colon here")), 400);
    EXPECT_EQ(status_of("garbage\r\n\r\n"), 400);
    EXPECT_EQ(parse_upgrade(std::string(9000, 'a'), 8192).status, 431) << "headers that never end";
    EXPECT_NE(http_error(426, "why").find("Sec-WebSocket-Version: 13"), std::string::npos);
}

TEST(WebSocketFrames, MaskedClientFramesDecodeAcrossAnySplit) {
    const std::vector<std::uint8_t> wire = masked(Opcode::text, "hello", true);
    for (std::size_t cut = 0; cut <= wire.size(); ++cut) {
        WsFrameDecoder d(1024);
        std::span<const std::uint8_t> first(wire.data(), cut);
        WsFrameDecoder::Step s = d.next(first);
        if (!s.frame) {
            std::span<const std::uint8_t> rest(wire.data() + cut, wire.size() - cut);
            s = d.next(rest);
        }
        ASSERT_TRUE(s.frame) << "cut at " << cut;
        EXPECT_EQ(std::string(s.frame->payload.begin(), s.frame->payload.end()), "hello");
        EXPECT_EQ(s.frame->opcode, Opcode::text);
    }
}

TEST(WebSocketFrames, LongLengthsUseTheirExtendedFields) {
    for (std::size_t n : {125u, 126u, 65535u, 65536u}) {
        const std::vector<std::uint8_t> wire = masked(Opcode::binary, std::string(n, 'x'), true);
        WsFrameDecoder d(1 << 20);
        std::span<const std::uint8_t> in = span_of(wire);
        WsFrameDecoder::Step s = d.next(in);
        ASSERT_TRUE(s.frame) << n;
        EXPECT_EQ(s.frame->payload.size(), n);
        EXPECT_TRUE(in.empty());
        std::vector<std::uint8_t> out;
        append_frame(out, Opcode::binary, s.frame->payload);
        EXPECT_EQ(out.size(), n + (n < 126 ? 2 : n <= 65535 ? 4 : 10)) << "server frames are unmasked";
    }
}

std::uint16_t error_code(const std::vector<std::uint8_t>& wire, std::size_t max = 1024) {
    WsFrameDecoder d(max);
    std::span<const std::uint8_t> in = span_of(wire);
    WsFrameDecoder::Step s = d.next(in);
    return s.error ? s.error->close_code : 0;
}

TEST(WebSocketFrames, EveryBrokenFrameIsAProtocolErrorOrTooBig) {
    std::vector<std::uint8_t> unmasked;
    append_frame(unmasked, Opcode::text, std::vector<std::uint8_t>{'h', 'i'});
    EXPECT_EQ(error_code(unmasked), kProtocolError) << "client frames must be masked";
    std::vector<std::uint8_t> rsv = masked(Opcode::text, "hi", true);
    rsv[0] |= 0x40;
    EXPECT_EQ(error_code(rsv), kProtocolError);
    std::vector<std::uint8_t> unknown = masked(Opcode::text, "hi", true);
    unknown[0] = static_cast<std::uint8_t>((unknown[0] & 0xF0) | 0x3);
    EXPECT_EQ(error_code(unknown), kProtocolError);
    EXPECT_EQ(error_code(masked(Opcode::ping, std::string(126, 'p'), true)), kProtocolError) << "control > 125";
    EXPECT_EQ(error_code(masked(Opcode::ping, "p", false)), kProtocolError) << "fragmented control";
    EXPECT_EQ(error_code(masked(Opcode::binary, std::string(2000, 'x'), true)), kMessageTooBig);
    // A 5-byte payload announced in the 16-bit field: not minimal.
    std::vector<std::uint8_t> long_form = {0x82, 0xFE, 0x00, 0x05, 1, 2, 3, 4, 'a', 'b', 'c', 'd', 'e'};
    EXPECT_EQ(error_code(long_form), kProtocolError);
}

TEST(WebSocketFrames, CloseReasonsAreCutOnACharacterBoundary) {
    std::string reason;
    for (int i = 0; i < 100; ++i) reason += "é";  // 2 bytes each
    std::vector<std::uint8_t> out;
    append_close(out, 4007, reason);
    ASSERT_EQ(out[1], 2 + 122);  // 123 would split an "é".
    EXPECT_TRUE(valid_utf8(std::span<const std::uint8_t>(out).subspan(4)));
}

TEST(WebSocketText, Utf8RulesOfRfc3629) {
    const auto ok = [](std::vector<std::uint8_t> v) { return valid_utf8(v); };
    EXPECT_TRUE(ok({'a', 0xC3, 0xA9, 0xE2, 0x82, 0xAC, 0xF0, 0x9F, 0x98, 0x80}));
    EXPECT_FALSE(ok({0xC0, 0xAF})) << "overlong";
    EXPECT_FALSE(ok({0xED, 0xA0, 0x80})) << "surrogate";
    EXPECT_FALSE(ok({0xF4, 0x90, 0x80, 0x80})) << "above U+10FFFF";
    EXPECT_FALSE(ok({0xE2, 0x82})) << "cut short";
    EXPECT_FALSE(ok({0x80})) << "a lone continuation byte";
    EXPECT_FALSE(ok({0xFF}));
}

TEST(WebSocketClose, OnlyTheCodesAPeerMaySend) {
    for (int c : {1000, 1001, 1002, 1003, 1007, 1011, 3000, 4999})
        EXPECT_TRUE(valid_close_code(static_cast<std::uint16_t>(c))) << c;
    for (int c : {0, 999, 1004, 1005, 1006, 1015, 2999, 5000})
        EXPECT_FALSE(valid_close_code(static_cast<std::uint16_t>(c))) << c;
}

}  // namespace
}  // namespace lifeline::ws

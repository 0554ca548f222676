// Tests for src/core/codec: encoding against hand-written bytes (the same bytes
// docs/PROTOCOL.md shows, checked here so the document cannot drift), round
// trips, split invariance of the incremental decoder, every DecodeErrorKind,
// the role rules, memory bounds and release, and the UTF-8 validator.
#include "lifeline/engine/codec.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <deque>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <vector>

namespace lifeline {
namespace {

using Bytes = std::vector<std::uint8_t>;

// "00 0a ff" -> {0x00, 0x0a, 0xff}; spaces and newlines are ignored, and so is
// everything from '#' to the end of a line (the annotation style of PROTOCOL.md).
Bytes from_hex(std::string_view text) {
    Bytes out;
    int high = -1;
    bool comment = false;
    for (char c : text) {
        if (c == '\n') comment = false;
        if (comment) continue;
        if (c == '#') {
            comment = true;
            continue;
        }
        int v = -1;
        if (c >= '0' && c <= '9') v = c - '0';
        if (c >= 'a' && c <= 'f') v = c - 'a' + 10;
        if (c >= 'A' && c <= 'F') v = c - 'A' + 10;
        if (v < 0) {
            EXPECT_TRUE(c == ' ' || c == '\n' || c == '\t' || c == '\r') << "bad hex char " << c;
            continue;
        }
        if (high < 0) {
            high = v;
        } else {
            out.push_back(static_cast<std::uint8_t>(high * 16 + v));
            high = -1;
        }
    }
    EXPECT_EQ(high, -1) << "odd number of hex digits";
    return out;
}

std::string to_hex(const Bytes& bytes) {
    static constexpr char kDigits[] = "0123456789abcdef";
    std::string out;
    for (std::uint8_t b : bytes) {
        if (!out.empty()) out += ' ';
        out += kDigits[b >> 4];
        out += kDigits[b & 0xF];
    }
    return out;
}

std::span<const std::uint8_t> span_of(std::string_view s) {
    return {reinterpret_cast<const std::uint8_t*>(s.data()), s.size()};
}

Bytes encode(const Frame& frame, std::size_t max_body_size = kDefaultMaxBodySize) {
    Bytes out;
    auto result = append_frame(out, frame, max_body_size);
    EXPECT_TRUE(result.ok()) << (result.ok() ? "" : result.error().message);
    return out;
}

Bytes concat(std::initializer_list<Bytes> parts) {
    Bytes out;
    for (const auto& p : parts) out.insert(out.end(), p.begin(), p.end());
    return out;
}

// What a decoder produced from a whole stream. DATA payloads are copied into
// `storage` because the decoder's views die with the next call.
struct Outcome {
    std::vector<Frame> frames;
    std::deque<Bytes> storage;
    std::optional<DecodeErrorKind> error;
    std::size_t max_buffered = 0;
    std::size_t max_capacity = 0;
    std::size_t final_buffered = 0;
};

void record(Outcome& out, Frame frame) {
    if (auto* data = std::get_if<Data>(&frame)) {
        out.storage.emplace_back(data->payload.begin(), data->payload.end());
        data->payload = out.storage.back();
    }
    out.frames.push_back(std::move(frame));
}

// Feeds `stream` cut at `cuts` (ascending offsets), each chunk in its own
// short-lived buffer so a decoder that kept a view into an old chunk is caught
// by AddressSanitizer.
Outcome decode_chunks(const Bytes& stream, const std::vector<std::size_t>& cuts, DecoderRole role = DecoderRole::any,
                      DecoderLimits limits = {}) {
    FrameDecoder decoder(role, limits);
    Outcome out;
    std::size_t begin = 0;
    std::vector<std::size_t> ends = cuts;
    ends.push_back(stream.size());
    for (std::size_t end : ends) {
        if (end < begin) end = begin;
        auto chunk = std::make_unique<Bytes>(stream.begin() + static_cast<std::ptrdiff_t>(begin),
                                             stream.begin() + static_cast<std::ptrdiff_t>(end));
        std::span<const std::uint8_t> input(*chunk);
        while (!out.error) {
            auto step = decoder.next(input);
            out.max_buffered = std::max(out.max_buffered, decoder.buffered_bytes());
            out.max_capacity = std::max(out.max_capacity, decoder.buffer_capacity());
            if (step.error) {
                EXPECT_FALSE(step.frame.has_value());
                out.error = step.error->kind;
                break;
            }
            if (!step.frame) {
                EXPECT_TRUE(input.empty()) << "decoder asked for more bytes but left some";
                break;
            }
            record(out, std::move(*step.frame));
        }
        begin = end;
        if (out.error) break;
    }
    out.final_buffered = decoder.buffered_bytes();
    return out;
}

Outcome decode_whole(const Bytes& stream, DecoderRole role = DecoderRole::any, DecoderLimits limits = {}) {
    return decode_chunks(stream, {}, role, limits);
}

std::optional<DecodeErrorKind> first_error(const Bytes& stream, DecoderRole role, DecoderLimits limits = {}) {
    return decode_whole(stream, role, limits).error;
}

std::string describe(const Outcome& o) {
    std::ostringstream s;
    s << o.frames.size() << " frames, error=" << (o.error ? std::string(to_string(*o.error)) : std::string("none"));
    return s.str();
}

void expect_same(const Outcome& a, const Outcome& b, const std::string& what) {
    EXPECT_EQ(a.error, b.error) << what;
    ASSERT_EQ(a.frames.size(), b.frames.size()) << what << ": " << describe(a) << " vs " << describe(b);
    for (std::size_t i = 0; i < a.frames.size(); ++i) {
        EXPECT_EQ(a.frames[i], b.frames[i]) << what << ": frame " << i;
    }
    EXPECT_EQ(a.final_buffered, b.final_buffered) << what;
}

// The example frames of docs/PROTOCOL.md, with the bytes they must encode to.
struct Example {
    std::string name;
    Frame frame;
    std::string hex;
};

const std::string kPayloadHi = "hi";

std::vector<Example> examples() {
    return {
        {"hello", Hello{1, 1000, 5000, "node-a"},
         "00 00 00 11  01  01  00 00 03 e8  00 00 13 88  06  6e 6f 64 65 2d 61"},
        {"hello-defaults", Hello{1, 0, 0, ""}, "00 00 00 0b  01  01  00 00 00 00  00 00 00 00  00"},
        {"hello-resume", Hello{1, 1000, 5000, "node-a", std::string("\x01\x02\x03\x04"), "ab"},
         "00 00 00 19  01  01  00 00 03 e8  00 00 13 88  06  6e 6f 64 65 2d 61  04  01 02 03 04  02  61 62"},
        {"welcome", Welcome{1, 1000, 4000, "node-a"},
         "00 00 00 11  02  01  00 00 03 e8  00 00 0f a0  06  6e 6f 64 65 2d 61"},
        {"ping", Ping{7, 1'500'000'000}, "00 00 00 11  03  00 00 00 00 00 00 00 07  00 00 00 00 59 68 2f 00"},
        {"pong", Pong{7, 1'500'000'000}, "00 00 00 11  04  00 00 00 00 00 00 00 07  00 00 00 00 59 68 2f 00"},
        {"data", Data{span_of(kPayloadHi)}, "00 00 00 03  05  68 69"},
        {"data-empty", Data{}, "00 00 00 01  05"},
        {"close", Close{static_cast<std::uint16_t>(CloseCode::heartbeat_timeout), "no pong"},
         "00 00 00 0a  06  00 07  6e 6f 20 70 6f 6e 67"},
    };
}

TEST(CodecEncode, ExamplesMatchHandWrittenBytes) {
    for (const auto& ex : examples()) {
        const Bytes expected = from_hex(ex.hex);
        EXPECT_EQ(to_hex(encode(ex.frame)), to_hex(expected)) << ex.name;
        EXPECT_EQ(encoded_size(ex.frame), expected.size()) << ex.name;
    }
}

TEST(CodecEncode, ExamplesDecodeBackToTheirFrames) {
    for (const auto& ex : examples()) {
        const Bytes bytes = from_hex(ex.hex);
        const Outcome out = decode_whole(bytes);
        ASSERT_FALSE(out.error) << ex.name << ": " << describe(out);
        ASSERT_EQ(out.frames.size(), 1u) << ex.name;
        EXPECT_EQ(out.frames[0], ex.frame) << ex.name;
    }
}

// Reads every "<!-- example: NAME -->" block of docs/PROTOCOL.md. CMake passes
// absolute source paths, so __FILE__ locates the repository.
std::map<std::string, Bytes> protocol_doc_examples() {
    const auto doc = std::filesystem::path(__FILE__).parent_path() / ".." / ".." / "docs" / "PROTOCOL.md";
    std::ifstream in(doc);
    EXPECT_TRUE(in.good()) << "cannot read " << doc;
    std::map<std::string, Bytes> found;
    std::string line;
    const std::string marker = "<!-- example: ";
    while (std::getline(in, line)) {
        // A marker is a line of its own, followed at once by the fenced block.
        if (line.rfind(marker, 0) != 0) continue;
        const auto end = line.find(" -->");
        EXPECT_NE(end, std::string::npos) << line;
        const std::string name = line.substr(marker.size(), end - marker.size());
        EXPECT_TRUE(std::getline(in, line) && line.rfind("```", 0) == 0)
            << "example " << name << " is not followed by a ``` block";
        std::string block;
        while (std::getline(in, line) && line.rfind("```", 0) != 0) block += line + "\n";
        EXPECT_EQ(found.count(name), 0u) << "duplicate example " << name;
        found[name] = from_hex(block);
    }
    return found;
}

TEST(CodecEncode, ProtocolDocExamplesAreWhatTheEncoderProduces) {
    const auto doc = protocol_doc_examples();
    const auto all = examples();
    EXPECT_EQ(doc.size(), all.size()) << "PROTOCOL.md and this test list different examples";
    for (const auto& ex : all) {
        auto it = doc.find(ex.name);
        ASSERT_NE(it, doc.end()) << "PROTOCOL.md lacks example " << ex.name;
        EXPECT_EQ(to_hex(it->second), to_hex(encode(ex.frame))) << ex.name;
    }
}

TEST(CodecRoundTrip, EveryFrameTypeAndFieldExtreme) {
    const std::string max_id(kMaxIdSize, 'x');
    const std::string max_reason(kMaxCloseReasonSize, 'r');
    const Bytes big(kDefaultMaxBodySize, 0xAB);
    const std::string unicode = "n\xC5\x93ud-\xF0\x9F\x98\x80";  // "nœud-😀"
    const std::vector<Frame> frames = {
        Hello{1, 0, 0, ""},
        Hello{1, 0xFFFFFFFF, 0xFFFFFFFF, max_id},
        Hello{1, 250, 2000, unicode},
        Welcome{1, 1, 2, "assigned-42"},
        Welcome{1, 0, 0, max_id},
        Ping{0, 0},
        Ping{0xFFFFFFFFFFFFFFFF, 0x0102030405060708},
        Pong{0x8000000000000000, 1},
        Data{},
        Data{span_of(std::string_view("\0\xff", 2))},
        Data{big},
        Close{0, ""},
        Close{0xFFFF, max_reason},
        Close{static_cast<std::uint16_t>(CloseCode::protocol_error), unicode},
    };
    for (const auto& frame : frames) {
        const Bytes bytes = encode(frame);
        EXPECT_EQ(bytes.size(), encoded_size(frame));
        FrameDecoder decoder(DecoderRole::any);
        std::span<const std::uint8_t> input(bytes);
        auto step = decoder.next(input);
        ASSERT_TRUE(step.frame.has_value()) << (step.error ? step.error->detail : "no frame");
        EXPECT_EQ(*step.frame, frame) << to_string(frame_type(frame));
        EXPECT_EQ(frame_type(*step.frame), frame_type(frame));
        EXPECT_TRUE(input.empty());
        EXPECT_EQ(decoder.frames_decoded(), 1u);
        auto again = decoder.next(input);
        EXPECT_FALSE(again.frame || again.error);
    }
}

TEST(CodecRoundTrip, FrameTypeFollowsTheWireTypeByte) {
    EXPECT_EQ(frame_type(Hello{}), FrameType::hello);
    EXPECT_EQ(frame_type(Welcome{}), FrameType::welcome);
    EXPECT_EQ(frame_type(Ping{}), FrameType::ping);
    EXPECT_EQ(frame_type(Pong{}), FrameType::pong);
    EXPECT_EQ(frame_type(Data{}), FrameType::data);
    EXPECT_EQ(frame_type(Close{}), FrameType::close);
    EXPECT_EQ(to_string(FrameType::hello), "HELLO");
    EXPECT_EQ(to_string(FrameType::close), "CLOSE");
    EXPECT_EQ(to_string(DecodeErrorKind::unexpected_frame), "unexpected_frame");
}

TEST(CodecDecode, WholeFramesAreParsedInPlace) {
    const std::string payload(100, 'p');
    const Bytes bytes = concat({encode(Ping{1, 2}), encode(Data{span_of(payload)})});
    FrameDecoder decoder(DecoderRole::any);
    std::span<const std::uint8_t> input(bytes);
    ASSERT_TRUE(decoder.next(input).frame);
    auto step = decoder.next(input);
    ASSERT_TRUE(step.frame);
    const auto& data = std::get<Data>(*step.frame);
    // Zero copy: the payload views the caller's bytes, right after the header.
    EXPECT_EQ(data.payload.data(), bytes.data() + encoded_size(Ping{}) + kFrameHeaderSize);
    EXPECT_EQ(data.payload.size(), payload.size());
    EXPECT_EQ(decoder.buffer_capacity(), 0u);
}

Bytes server_stream() {
    const std::string payload(300, 'z');
    return concat({encode(Hello{1, 1000, 5000, "node-a"}), encode(Ping{1, 100}), encode(Data{span_of(payload)}),
                   encode(Pong{9, 99}), encode(Data{}), encode(Data{span_of(std::string_view("ab"))}),
                   encode(Close{static_cast<std::uint16_t>(CloseCode::normal), "bye"})});
}

TEST(CodecSplits, OneByteFeedingGivesTheSameFrames) {
    const Bytes stream = server_stream();
    const Outcome whole = decode_whole(stream, DecoderRole::server);
    ASSERT_FALSE(whole.error);
    ASSERT_EQ(whole.frames.size(), 7u);
    std::vector<std::size_t> cuts;
    for (std::size_t i = 1; i < stream.size(); ++i) cuts.push_back(i);
    const Outcome bytewise = decode_chunks(stream, cuts, DecoderRole::server);
    expect_same(whole, bytewise, "1-byte feeding");
    // Never more than the largest frame (the 300-byte DATA) is held.
    EXPECT_LE(bytewise.max_buffered, kFrameHeaderSize + 300);
    EXPECT_LE(bytewise.max_capacity, kFrameHeaderSize + 300);
    EXPECT_EQ(bytewise.final_buffered, 0u);
}

TEST(CodecSplits, EveryTwoWaySplitGivesTheSameFrames) {
    const Bytes stream = server_stream();
    const Outcome whole = decode_whole(stream, DecoderRole::server);
    for (std::size_t cut = 0; cut <= stream.size(); ++cut) {
        expect_same(whole, decode_chunks(stream, {cut}, DecoderRole::server), "split at " + std::to_string(cut));
    }
}

TEST(CodecSplits, EveryTwoWaySplitOfAnInvalidStreamGivesTheSameError) {
    // Two good frames, then a PING whose body is one byte short.
    Bytes stream = concat({encode(Hello{1, 0, 0, "a"}), encode(Ping{1, 2})});
    const Bytes bad = from_hex("00 00 00 10 03  00 00 00 00 00 00 00 01  00 00 00 00 00 00 00");
    stream.insert(stream.end(), bad.begin(), bad.end());
    const Outcome whole = decode_whole(stream, DecoderRole::server);
    ASSERT_EQ(whole.error, DecodeErrorKind::bad_body_size);
    ASSERT_EQ(whole.frames.size(), 2u);
    for (std::size_t cut = 0; cut <= stream.size(); ++cut) {
        expect_same(whole, decode_chunks(stream, {cut}, DecoderRole::server), "split at " + std::to_string(cut));
    }
}

TEST(CodecSplits, RandomStreamsAndRandomSplitsAgree) {
    std::mt19937 rng(20240611);  // Fixed seed: the test is deterministic.
    std::deque<std::string> payloads;
    for (int round = 0; round < 200; ++round) {
        Bytes stream;
        const int count = 1 + static_cast<int>(rng() % 8);
        for (int i = 0; i < count; ++i) {
            Frame frame;
            switch (rng() % 6) {
                case 0:
                    frame = Hello{1, static_cast<std::uint32_t>(rng()), 0, std::string(rng() % 20, 'h')};
                    break;
                case 1:
                    frame = Welcome{1, 0, static_cast<std::uint32_t>(rng()), std::string(rng() % 20, 'w')};
                    break;
                case 2:
                    frame = Ping{rng(), rng()};
                    break;
                case 3:
                    frame = Pong{rng(), rng()};
                    break;
                case 4:
                    payloads.emplace_back(rng() % 600, static_cast<char>(rng()));
                    frame = Data{span_of(payloads.back())};
                    break;
                default:
                    frame = Close{static_cast<std::uint16_t>(rng()), std::string(rng() % 121, 'c')};
                    break;
            }
            const Bytes b = encode(frame);
            stream.insert(stream.end(), b.begin(), b.end());
        }
        const Outcome whole = decode_whole(stream);
        ASSERT_FALSE(whole.error);
        ASSERT_EQ(whole.frames.size(), static_cast<std::size_t>(count));
        std::vector<std::size_t> cuts;
        for (std::size_t at = 0; at < stream.size(); at += 1 + rng() % 40) cuts.push_back(at);
        expect_same(whole, decode_chunks(stream, cuts), "round " + std::to_string(round));
    }
}

// --- Errors -----------------------------------------------------------------

TEST(CodecErrors, EmptyFrame) {
    EXPECT_EQ(first_error(from_hex("00 00 00 00 05"), DecoderRole::any), DecodeErrorKind::empty_frame);
}

TEST(CodecErrors, OversizedLengthIsRejectedAfterFiveBytes) {
    const Bytes header = from_hex("ff ff ff ff 05");
    FrameDecoder decoder(DecoderRole::any);
    for (std::size_t i = 0; i < header.size(); ++i) {
        std::span<const std::uint8_t> input(&header[i], 1);
        auto step = decoder.next(input);
        if (i + 1 < header.size()) {
            EXPECT_FALSE(step.error) << "byte " << i;
            EXPECT_EQ(decoder.buffered_bytes(), i + 1);
            EXPECT_LE(decoder.buffer_capacity(), kFrameHeaderSize);
        } else {
            ASSERT_TRUE(step.error);
            EXPECT_EQ(step.error->kind, DecodeErrorKind::frame_too_large);
            EXPECT_NE(step.error->detail.find("4294967295"), std::string::npos) << step.error->detail;
        }
    }
    EXPECT_EQ(decoder.buffered_bytes(), 0u);
    EXPECT_EQ(decoder.buffer_capacity(), 0u);
}

TEST(CodecErrors, FrameTooLargeHonoursTheConfiguredLimitAndTheDefault) {
    const Bytes at_limit = encode(Data{span_of(std::string(16, 'a'))}, 16);
    EXPECT_FALSE(first_error(at_limit, DecoderRole::any, DecoderLimits{16}));
    const Bytes over = encode(Data{span_of(std::string(17, 'a'))}, 17);
    EXPECT_EQ(first_error(over, DecoderRole::any, DecoderLimits{16}), DecodeErrorKind::frame_too_large);
    // Default: 64 KiB body passes, one byte more is refused from the header alone.
    EXPECT_FALSE(first_error(encode(Data{Bytes(kDefaultMaxBodySize)}), DecoderRole::any));
    EXPECT_EQ(first_error(from_hex("00 01 00 02 05"), DecoderRole::any), DecodeErrorKind::frame_too_large);
}

TEST(CodecErrors, UnknownType) {
    for (const char* hex : {"00 00 00 01 00", "00 00 00 01 07", "00 00 00 01 ff"}) {
        EXPECT_EQ(first_error(from_hex(hex), DecoderRole::any), DecodeErrorKind::unknown_type) << hex;
    }
}

TEST(CodecErrors, BadBodySizeIsCaughtFromTheHeader) {
    // Each of these is refused as soon as the 5 header bytes arrive: no body sent.
    const char* headers[] = {
        "00 00 00 10 03",  // PING, body 15
        "00 00 00 12 03",  // PING, body 17
        "00 00 00 01 04",  // PONG, body 0
        "00 00 00 0a 01",  // HELLO, body 9 (< 10)
        "00 00 02 4c 01",  // HELLO, body 587 (> 10 + 255 + 1 + 64 + 1 + 255)
        "00 00 00 0a 02",  // WELCOME, body 9
        "00 00 00 02 06",  // CLOSE, body 1 (< 2)
        "00 00 00 7c 06",  // CLOSE, body 123 (> 2 + 120)
    };
    for (const char* hex : headers) {
        FrameDecoder decoder(DecoderRole::any);
        const Bytes header = from_hex(hex);
        std::span<const std::uint8_t> input(header);
        auto step = decoder.next(input);
        ASSERT_TRUE(step.error) << hex;
        EXPECT_EQ(step.error->kind, DecodeErrorKind::bad_body_size) << hex;
        EXPECT_EQ(decoder.buffered_bytes(), 0u) << hex;
    }
}

TEST(CodecErrors, HandshakeIdLengthMustMatchTheBody) {
    // HELLO body 12 bytes but id_len says 1 (body must be exactly 10 + id_len).
    EXPECT_EQ(first_error(from_hex("00 00 00 0d 01  01 00 00 00 00 00 00 00 00 01  61 62"), DecoderRole::any),
              DecodeErrorKind::bad_body_size);
    // WELCOME body 11 bytes but id_len says 2.
    EXPECT_EQ(first_error(from_hex("00 00 00 0c 02  01 00 00 00 00 00 00 00 00 02  61"), DecoderRole::any),
              DecodeErrorKind::bad_body_size);
}

TEST(CodecErrors, BadVersion) {
    EXPECT_EQ(first_error(from_hex("00 00 00 0b 01  00 00 00 00 00 00 00 00 00 00"), DecoderRole::server),
              DecodeErrorKind::bad_version);
    EXPECT_EQ(first_error(from_hex("00 00 00 0b 01  02 00 00 00 00 00 00 00 00 00"), DecoderRole::server),
              DecodeErrorKind::bad_version);
    EXPECT_EQ(first_error(from_hex("00 00 00 0b 02  ff 00 00 00 00 00 00 00 00 00"), DecoderRole::client),
              DecodeErrorKind::bad_version);
}

TEST(CodecErrors, BadUtf8InIdAndReason) {
    EXPECT_EQ(first_error(from_hex("00 00 00 0c 01  01 00 00 00 00 00 00 00 00 01  ff"), DecoderRole::server),
              DecodeErrorKind::bad_utf8);
    EXPECT_EQ(first_error(from_hex("00 00 00 0d 02  01 00 00 00 00 00 00 00 00 02  c0 80"), DecoderRole::client),
              DecodeErrorKind::bad_utf8);
    EXPECT_EQ(first_error(from_hex("00 00 00 06 06  00 02  6f 6b ed a0 80"), DecoderRole::any),
              DecodeErrorKind::bad_utf8);
}

TEST(CodecErrors, DetailNamesTheFrameAndTheValue) {
    struct Case {
        const char* hex;
        DecoderRole role;
        std::vector<std::string_view> words;
    };
    const Case cases[] = {
        {"00 00 00 10 03", DecoderRole::any, {"PING", "15", "16"}},
        {"00 00 00 01 2a", DecoderRole::any, {"0x2a"}},
        {"00 00 00 0b 01  07 00 00 00 00 00 00 00 00 00", DecoderRole::server, {"HELLO", "7"}},
        {"00 00 00 11 03", DecoderRole::server, {"PING", "HELLO"}},
        {"00 00 00 05 06  00 00  61 ff 62", DecoderRole::any, {"CLOSE", "reason", "0xff", "1"}},
    };
    for (const auto& c : cases) {
        FrameDecoder decoder(c.role);
        const Bytes bytes = from_hex(c.hex);
        std::span<const std::uint8_t> input(bytes);
        auto step = decoder.next(input);
        ASSERT_TRUE(step.error) << c.hex;
        for (auto word : c.words) {
            EXPECT_NE(step.error->detail.find(word), std::string::npos)
                << "'" << step.error->detail << "' lacks '" << word << "'";
        }
    }
}

TEST(CodecErrors, EveryKindHasADistinctName) {
    const DecodeErrorKind kinds[] = {
        DecodeErrorKind::empty_frame,
        DecodeErrorKind::frame_too_large,
        DecodeErrorKind::unknown_type,
        DecodeErrorKind::bad_body_size,
        DecodeErrorKind::bad_version,
        DecodeErrorKind::bad_utf8,
        DecodeErrorKind::unexpected_first_frame,
        DecodeErrorKind::unexpected_frame,
    };
    std::set<std::string_view> names;
    for (auto kind : kinds) names.insert(to_string(kind));
    EXPECT_EQ(names.size(), std::size(kinds));
}

TEST(CodecErrors, FailedDecoderStaysFailedAndConsumesNothing) {
    FrameDecoder decoder(DecoderRole::server);
    const Bytes bad = encode(Ping{1, 2});  // A server's first frame must be HELLO.
    std::span<const std::uint8_t> input(bad);
    auto step = decoder.next(input);
    ASSERT_TRUE(step.error);
    EXPECT_EQ(step.error->kind, DecodeErrorKind::unexpected_first_frame);
    EXPECT_TRUE(decoder.failed());

    const Bytes good = concat({encode(Hello{}), encode(Ping{3, 4})});
    for (int i = 0; i < 3; ++i) {
        std::span<const std::uint8_t> more(good);
        auto again = decoder.next(more);
        ASSERT_TRUE(again.error);
        EXPECT_FALSE(again.frame);
        EXPECT_EQ(again.error->kind, DecodeErrorKind::unexpected_first_frame);
        EXPECT_EQ(more.size(), good.size()) << "a failed decoder consumed input";
        EXPECT_EQ(decoder.frames_decoded(), 0u);
        EXPECT_EQ(decoder.buffered_bytes(), 0u);
    }
    std::span<const std::uint8_t> empty;
    EXPECT_TRUE(decoder.next(empty).error);
}

TEST(CodecErrors, FailureInsideABufferedFrameReleasesTheBuffer) {
    // A HELLO with a bad id, fed in two parts so the error is found in the buffer.
    const Bytes bytes = from_hex("00 00 00 0c 01  01 00 00 00 00 00 00 00 00 01  80");
    FrameDecoder decoder(DecoderRole::server);
    std::span<const std::uint8_t> first(bytes.data(), 7);
    EXPECT_FALSE(decoder.next(first).error);
    EXPECT_EQ(decoder.buffered_bytes(), 7u);
    std::span<const std::uint8_t> rest(bytes.data() + 7, bytes.size() - 7);
    auto step = decoder.next(rest);
    ASSERT_TRUE(step.error);
    EXPECT_EQ(step.error->kind, DecodeErrorKind::bad_utf8);
    EXPECT_EQ(decoder.buffered_bytes(), 0u);
    EXPECT_EQ(decoder.buffer_capacity(), 0u);
}

// --- Role rules -------------------------------------------------------------

TEST(CodecRoles, ServerAcceptsHelloThenTraffic) {
    const Outcome out = decode_whole(server_stream(), DecoderRole::server);
    EXPECT_FALSE(out.error) << describe(out);
    EXPECT_EQ(out.frames.size(), 7u);
}

TEST(CodecRoles, ClientAcceptsWelcomeOrCloseFirst) {
    const Bytes welcome_first = concat(
        {encode(Welcome{1, 1000, 5000, "x"}), encode(Ping{1, 1}), encode(Pong{2, 2}), encode(Data{}), encode(Close{})});
    EXPECT_FALSE(decode_whole(welcome_first, DecoderRole::client).error);
    const Bytes close_first = encode(Close{static_cast<std::uint16_t>(CloseCode::shutdown), "draining"});
    const Outcome out = decode_whole(close_first, DecoderRole::client);
    EXPECT_FALSE(out.error);
    EXPECT_EQ(out.frames.size(), 1u);
}

TEST(CodecRoles, WrongFirstFrame) {
    EXPECT_EQ(first_error(encode(Ping{}), DecoderRole::server), DecodeErrorKind::unexpected_first_frame);
    EXPECT_EQ(first_error(encode(Close{}), DecoderRole::server), DecodeErrorKind::unexpected_first_frame);
    EXPECT_EQ(first_error(encode(Welcome{}), DecoderRole::server), DecodeErrorKind::unexpected_first_frame);
    EXPECT_EQ(first_error(encode(Data{}), DecoderRole::client), DecodeErrorKind::unexpected_first_frame);
    EXPECT_EQ(first_error(encode(Hello{}), DecoderRole::client), DecodeErrorKind::unexpected_first_frame);
    EXPECT_EQ(first_error(encode(Pong{}), DecoderRole::client), DecodeErrorKind::unexpected_first_frame);
}

TEST(CodecRoles, FramesASideMustNeverReceive) {
    EXPECT_EQ(first_error(concat({encode(Hello{}), encode(Hello{})}), DecoderRole::server),
              DecodeErrorKind::unexpected_frame);
    EXPECT_EQ(first_error(concat({encode(Hello{}), encode(Welcome{})}), DecoderRole::server),
              DecodeErrorKind::unexpected_frame);
    EXPECT_EQ(first_error(concat({encode(Welcome{}), encode(Welcome{})}), DecoderRole::client),
              DecodeErrorKind::unexpected_frame);
    EXPECT_EQ(first_error(concat({encode(Welcome{}), encode(Hello{})}), DecoderRole::client),
              DecodeErrorKind::unexpected_frame);
    EXPECT_EQ(first_error(concat({encode(Close{}), encode(Welcome{})}), DecoderRole::client),
              DecodeErrorKind::unexpected_frame);
}

TEST(CodecRoles, RoleIsCheckedFromTheHeaderBeforeTheBodyArrives) {
    // The header of a second HELLO is enough to refuse it.
    Bytes bytes = encode(Hello{});
    const Bytes header = from_hex("00 00 00 0b 01");
    bytes.insert(bytes.end(), header.begin(), header.end());
    EXPECT_EQ(first_error(bytes, DecoderRole::server), DecodeErrorKind::unexpected_frame);
}

TEST(CodecRoles, AnyRoleHasNoOrderingRules) {
    const Bytes bytes =
        concat({encode(Ping{}), encode(Welcome{}), encode(Hello{}), encode(Hello{}), encode(Welcome{})});
    const Outcome out = decode_whole(bytes, DecoderRole::any);
    EXPECT_FALSE(out.error);
    EXPECT_EQ(out.frames.size(), 5u);
}

// --- Memory -----------------------------------------------------------------

TEST(CodecMemory, PartialBufferIsReleasedAfterTheFrameCompletes) {
    const std::string payload = "payload in the partial buffer";
    const Bytes bytes = encode(Data{span_of(payload)});
    FrameDecoder decoder(DecoderRole::any);

    std::span<const std::uint8_t> first(bytes.data(), 3);
    EXPECT_FALSE(decoder.next(first).frame);
    EXPECT_TRUE(first.empty());
    EXPECT_EQ(decoder.buffered_bytes(), 3u);
    EXPECT_GT(decoder.buffer_capacity(), 0u);

    std::span<const std::uint8_t> rest(bytes.data() + 3, bytes.size() - 3);
    auto step = decoder.next(rest);
    ASSERT_TRUE(step.frame);
    EXPECT_TRUE(rest.empty());
    // The frame is complete, so nothing is buffered, but the memory is kept
    // because the payload still views it.
    EXPECT_EQ(decoder.buffered_bytes(), 0u);
    const auto& data = std::get<Data>(*step.frame);
    EXPECT_EQ(std::string(data.payload.begin(), data.payload.end()), payload);
    EXPECT_GT(decoder.buffer_capacity(), 0u);

    // The next call, even with no bytes, releases the heap memory.
    std::span<const std::uint8_t> none;
    auto idle = decoder.next(none);
    EXPECT_FALSE(idle.frame || idle.error);
    EXPECT_EQ(decoder.buffered_bytes(), 0u);
    EXPECT_EQ(decoder.buffer_capacity(), 0u);
}

TEST(CodecMemory, OnlyTheTrailingPartialFrameIsCopied) {
    const Bytes ping = encode(Ping{1, 2});
    Bytes bytes = concat({ping, ping});
    bytes.insert(bytes.end(), ping.begin(), ping.begin() + 8);
    FrameDecoder decoder(DecoderRole::any);
    std::span<const std::uint8_t> input(bytes);
    EXPECT_TRUE(decoder.next(input).frame);
    EXPECT_TRUE(decoder.next(input).frame);
    EXPECT_EQ(decoder.buffer_capacity(), 0u);  // Both whole frames were parsed in place.
    auto step = decoder.next(input);
    EXPECT_FALSE(step.frame || step.error);
    EXPECT_TRUE(input.empty());
    EXPECT_EQ(decoder.buffered_bytes(), 8u);
    EXPECT_LE(decoder.buffer_capacity(), ping.size());
}

TEST(CodecMemory, TrickledFrameNeverOutgrowsItself) {
    const Bytes bytes = encode(Data{Bytes(kDefaultMaxBodySize, 0x5A)});
    std::vector<std::size_t> cuts;
    for (std::size_t i = 1; i < bytes.size(); i += 7) cuts.push_back(i);
    const Outcome out = decode_chunks(bytes, cuts);
    ASSERT_EQ(out.frames.size(), 1u);
    EXPECT_LE(out.max_buffered, kFrameHeaderSize + kDefaultMaxBodySize);
    EXPECT_LE(out.max_capacity, kFrameHeaderSize + kDefaultMaxBodySize);
    EXPECT_EQ(out.final_buffered, 0u);
}

TEST(CodecMemory, DecoderObjectStaysSmall) {
    // An idle connection holds one decoder; keep it within a cache line.
    EXPECT_LE(sizeof(FrameDecoder), 48u);
}

// --- Encoder validation ---------------------------------------------------

void expect_append_fails(const Frame& frame, std::initializer_list<std::string_view> words,
                         std::size_t max_body_size = kDefaultMaxBodySize) {
    Bytes out = {0xAA, 0xBB};
    auto result = append_frame(out, frame, max_body_size);
    ASSERT_FALSE(result.ok());
    EXPECT_EQ(out, (Bytes{0xAA, 0xBB})) << "append_frame appended on error";
    for (auto word : words) {
        EXPECT_NE(result.error().message.find(word), std::string::npos)
            << "'" << result.error().message << "' lacks '" << word << "'";
    }
}

TEST(CodecAppend, RejectsFieldsThatDoNotFit) {
    expect_append_fails(Hello{1, 0, 0, std::string(256, 'i')}, {"HELLO", "id", "256", "255"});
    expect_append_fails(Welcome{1, 0, 0, std::string(300, 'i')}, {"WELCOME", "id", "300"});
    expect_append_fails(Close{0, std::string(121, 'r')}, {"CLOSE", "reason", "121", "120"});
    expect_append_fails(Hello{1, 0, 0, "ab\xff"}, {"HELLO", "UTF-8", "0xff", "offset 2"});
    expect_append_fails(Welcome{1, 0, 0, "\xc0\xaf"}, {"WELCOME", "UTF-8"});
    expect_append_fails(Close{0, "\xed\xa0\x80"}, {"CLOSE", "UTF-8"});
    expect_append_fails(Hello{2, 0, 0, ""}, {"HELLO", "version 2"});
    expect_append_fails(Welcome{0, 0, 0, ""}, {"WELCOME", "version 0"});
    const std::string eleven(11, 'd');
    expect_append_fails(Data{span_of(eleven)}, {"DATA", "11", "10"}, 10);
    expect_append_fails(Data{Bytes(kDefaultMaxBodySize + 1)}, {"DATA", "65537", "65536"});
    // A limit too small for the frame's fixed part fails too.
    expect_append_fails(Ping{}, {"PING", "16"}, 15);
}

TEST(CodecAppend, AcceptsFieldsAtTheirLimits) {
    Bytes out;
    EXPECT_TRUE(append_frame(out, Hello{1, 0, 0, std::string(255, 'i')}).ok());
    EXPECT_TRUE(append_frame(out, Close{0, std::string(120, 'r')}).ok());
    EXPECT_TRUE(append_frame(out, Data{span_of(std::string_view("0123456789"))}, 10).ok());
    EXPECT_EQ(out.size(), (5 + 10 + 255) + (5 + 2 + 120) + (5 + 10));
}

TEST(CodecAppend, AppendsAfterExistingBytes) {
    Bytes out = {0x01};
    ASSERT_TRUE(append_frame(out, Data{}).ok());
    EXPECT_EQ(out, from_hex("01  00 00 00 01 05"));
}

// --- UTF-8 (RFC 3629 section 4) ------------------------------------------

TEST(CodecUtf8, AcceptsWellFormedText) {
    const std::string_view valid[] = {
        "",
        "plain ascii",
        std::string_view("\0", 1),  // U+0000 is a character like any other.
        "\xC2\x80",                 // U+0080, smallest 2-byte
        "\xC3\xA9",                 // é
        "\xDF\xBF",                 // U+07FF
        "\xE0\xA0\x80",             // U+0800, smallest 3-byte
        "\xE2\x82\xAC",             // €
        "\xED\x9F\xBF",             // U+D7FF, just below the surrogates
        "\xEE\x80\x80",             // U+E000, just above them
        "\xEF\xBF\xBF",             // U+FFFF
        "\xF0\x90\x80\x80",         // U+10000, smallest 4-byte
        "\xF0\x9F\x98\x80",         // 😀
        "\xF4\x8F\xBF\xBF",         // U+10FFFF, the last code point
        "mixed \xC3\xA9\xE2\x82\xAC\xF0\x9F\x98\x80 end",
    };
    for (auto s : valid) EXPECT_TRUE(is_valid_utf8(s)) << to_hex(Bytes(s.begin(), s.end()));
}

TEST(CodecUtf8, RejectsOverlongEncodings) {
    for (std::string_view s :
         {"\xC0\x80", "\xC0\xAF", "\xC1\xBF", "\xE0\x80\x80", "\xE0\x9F\xBF", "\xF0\x80\x80\x80", "\xF0\x8F\xBF\xBF"}) {
        EXPECT_FALSE(is_valid_utf8(s)) << to_hex(Bytes(s.begin(), s.end()));
    }
}

TEST(CodecUtf8, RejectsSurrogates) {
    for (std::string_view s :
         {"\xED\xA0\x80", "\xED\xAF\xBF", "\xED\xB0\x80", "\xED\xBF\xBF", "\xED\xA0\xBD\xED\xB8\x80"}) {
        EXPECT_FALSE(is_valid_utf8(s)) << to_hex(Bytes(s.begin(), s.end()));
    }
}

TEST(CodecUtf8, RejectsCodePointsAboveU10FFFF) {
    for (std::string_view s : {"\xF4\x90\x80\x80", "\xF4\xBF\xBF\xBF", "\xF5\x80\x80\x80", "\xF7\xBF\xBF\xBF",
                               "\xF8\x88\x80\x80\x80", "\xFE", "\xFF"}) {
        EXPECT_FALSE(is_valid_utf8(s)) << to_hex(Bytes(s.begin(), s.end()));
    }
}

TEST(CodecUtf8, RejectsTruncatedAndMalformedSequences) {
    for (std::string_view s : {"\xC3", "\xE2\x82", "\xF0\x9F\x98", "a\xE2", "\xF0\x9F\x98z", "\x80", "\xBF", "a\x80z",
                               "\xC3\x28", "\xE2\x28\xA1", "\xE2\x82\x28", "\xF0\x9F\x28\x80"}) {
        EXPECT_FALSE(is_valid_utf8(s)) << to_hex(Bytes(s.begin(), s.end()));
    }
}

}  // namespace

// ---- Resume tokens and credentials (docs/PROTOCOL.md) ------------------------------

TEST(CodecHandshakeFields, TokenAndCredentialRoundTripAndStayOutWhenEmpty) {
    Hello with{kProtocolVersion, 1000, 3000, "dev-1", std::string("\x00\x01tok", 5), "sig\xff"};
    Bytes wire;
    ASSERT_TRUE(append_frame(wire, with).ok());
    EXPECT_EQ(wire.size(), encoded_size(with));
    FrameDecoder server(DecoderRole::server);
    std::span<const std::uint8_t> in(wire);
    auto step = server.next(in);
    ASSERT_TRUE(step.frame);
    EXPECT_EQ(std::get<Hello>(*step.frame), with);
    // Only a credential: the token's length byte is still there (0), so the fields stay in order.
    Hello cred_only{kProtocolVersion, 0, 0, "", "", "c"};
    wire.clear();
    ASSERT_TRUE(append_frame(wire, cred_only).ok());
    EXPECT_EQ(wire.size(), 5u + 10 + 1 + 1 + 1);
    Welcome token{kProtocolVersion, 1000, 3000, "dev-1", "0123456789abcdef"};
    wire.clear();
    ASSERT_TRUE(append_frame(wire, token).ok());
    FrameDecoder client(DecoderRole::client);
    std::span<const std::uint8_t> in2(wire);
    auto step2 = client.next(in2);
    ASSERT_TRUE(step2.frame);
    EXPECT_EQ(std::get<Welcome>(*step2.frame), token);
    // Empty fields: byte for byte the frame as it was before they existed.
    wire.clear();
    ASSERT_TRUE(append_frame(wire, Hello{kProtocolVersion, 1000, 3000, "x"}).ok());
    EXPECT_EQ(wire.size(), 5u + 10 + 1);
}

TEST(CodecHandshakeFields, OversizedOrTruncatedOrTrailingFieldsAreBadBodySize) {
    Bytes wire;
    EXPECT_FALSE(append_frame(wire, Hello{kProtocolVersion, 0, 0, "", std::string(65, 't'), ""}).ok());
    EXPECT_FALSE(append_frame(wire, Hello{kProtocolVersion, 0, 0, "", "", std::string(256, 'c')}).ok());
    EXPECT_TRUE(wire.empty());
    for (const char* hex : {
             "00 00 00 0d 01 01 00 00 00 00 00 00 00 00 00 05 61",     // token_len 5, 1 byte left
             "00 00 00 0c 01 01 00 00 00 00 00 00 00 00 00 41",        // token_len 65 (> 64)
             "00 00 00 0e 01 01 00 00 00 00 00 00 00 00 00 00 00 7a",  // a byte after the credential
             "00 00 00 0d 02 01 00 00 00 00 00 00 00 00 00 00 00",     // WELCOME: a byte after the token
             // One encoding per frame: empty fields that could be left out are refused
             // (found by the decoder fuzzer: they decoded, but re-encoded differently).
             "00 00 00 0c 01 01 00 00 00 00 00 00 00 00 00 00",        // HELLO: an empty token alone
             "00 00 00 0d 01 01 00 00 00 00 00 00 00 00 00 00 00",     // HELLO: empty token and credential
             "00 00 00 0e 01 01 00 00 00 00 00 00 00 00 00 01 74 00",  // HELLO: a token, an empty credential
             "00 00 00 0c 02 01 00 00 00 00 00 00 00 00 00 00",        // WELCOME: an empty token
         }) {
        FrameDecoder decoder(DecoderRole::any);
        const Bytes frame = from_hex(hex);
        std::span<const std::uint8_t> input(frame);
        auto step = decoder.next(input);
        ASSERT_TRUE(step.error) << hex;
        EXPECT_EQ(step.error->kind, DecodeErrorKind::bad_body_size) << hex;
    }
}

}  // namespace lifeline

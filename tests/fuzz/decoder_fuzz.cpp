// libFuzzer target for the FrameDecoder (src/core/codec).
//
// Beyond "does not crash" it checks the properties docs/PROTOCOL.md promises:
//   1. split invariance: the input decoded whole and fed in chunks gives the
//      same frames and the same error kind;
//   2. canonical encoding: each frame parsed in place re-encodes to exactly the
//      bytes it was parsed from, and decoding that encoding gives the frame back;
//   3. bounded memory: the decoder never holds more than header + max body;
//   4. a failed decoder stays failed and consumes nothing.
// A violated property calls __builtin_trap(), which libFuzzer reports as a
// crash, so the run (and the ctest that wraps it) fails.
//
// Input layout: byte 0 picks the role (bits 0-1), the body-size limit (bits
// 2-3) and the seed of the chunk sizes (bits 4-7); the rest is the stream.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <deque>
#include <optional>
#include <span>
#include <vector>

#include "lifeline/engine/codec.hpp"

namespace {

using lifeline::DecodeErrorKind;
using lifeline::DecoderLimits;
using lifeline::DecoderRole;
using lifeline::Frame;
using lifeline::FrameDecoder;

[[noreturn]] void fail(const char* what) {
    std::fprintf(stderr, "decoder_fuzz: property violated: %s\n", what);
    __builtin_trap();
}

void check(bool ok, const char* what) {
    if (!ok) fail(what);
}

struct Outcome {
    std::vector<Frame> frames;
    std::deque<std::vector<std::uint8_t>> storage;  // Owns copies of DATA payloads.
    std::optional<DecodeErrorKind> error;
};

// Keeps `frame` past the decoder's next call: a DATA payload may view the
// decoder's buffer or a chunk that is about to die.
void keep(Outcome& out, Frame frame) {
    if (auto* data = std::get_if<lifeline::Data>(&frame)) {
        out.storage.emplace_back(data->payload.begin(), data->payload.end());
        data->payload = out.storage.back();
    }
    out.frames.push_back(std::move(frame));
}

void check_bounds(const FrameDecoder& decoder, std::size_t max_body) {
    const std::size_t bound = lifeline::kFrameHeaderSize + max_body;
    check(decoder.buffered_bytes() <= bound, "buffered_bytes() above header + max body");
    check(decoder.buffer_capacity() <= bound, "buffer_capacity() above header + max body");
}

void check_stays_failed(FrameDecoder& decoder, DecodeErrorKind kind, std::span<const std::uint8_t> some_input) {
    check(decoder.failed(), "decoder not failed() after an error");
    const std::uint64_t frames = decoder.frames_decoded();
    auto again = decoder.next(some_input);
    check(again.error && !again.frame, "failed decoder did not return an error");
    check(again.error->kind == kind, "failed decoder changed its error kind");
    check(decoder.frames_decoded() == frames, "failed decoder decoded a frame");
}

// Decodes `stream` as one span. Every frame is then parsed in place, so the
// bytes each frame was parsed from are known and must equal its re-encoding
// (the wire format is canonical: one frame, one encoding).
Outcome decode_whole(std::span<const std::uint8_t> stream, DecoderRole role, DecoderLimits limits) {
    FrameDecoder decoder(role, limits);
    Outcome out;
    std::span<const std::uint8_t> input = stream;
    while (true) {
        const std::size_t before = input.size();
        auto step = decoder.next(input);
        check_bounds(decoder, limits.max_body_size);
        if (step.error) {
            check(!step.frame, "a step carries both a frame and an error");
            out.error = step.error->kind;
            check_stays_failed(decoder, *out.error, stream);
            break;
        }
        if (!step.frame) {
            check(input.empty(), "decoder waits for bytes but left input unconsumed");
            break;
        }
        const std::size_t used = before - input.size();
        const auto consumed = stream.subspan(stream.size() - before, used);

        std::vector<std::uint8_t> encoded;
        check(lifeline::append_frame(encoded, *step.frame, limits.max_body_size).ok(),
              "append_frame refused a frame the decoder accepted");
        check(encoded.size() == lifeline::encoded_size(*step.frame), "encoded_size() is wrong");
        check(encoded.size() == consumed.size() && std::equal(encoded.begin(), encoded.end(), consumed.begin()),
              "re-encoding differs from the bytes the frame was parsed from");

        FrameDecoder redecoder(DecoderRole::any, limits);
        std::span<const std::uint8_t> again(encoded);
        auto re = redecoder.next(again);
        check(re.frame.has_value() && again.empty(), "re-encoded frame does not decode");
        check(*re.frame == *step.frame, "re-encoded frame decodes to a different frame");

        keep(out, std::move(*step.frame));
    }
    return out;
}

// Feeds `stream` in chunks whose sizes come from a small LCG, each chunk in its
// own heap buffer that dies after use, so a decoder that kept a view into an
// old chunk trips AddressSanitizer.
Outcome decode_split(std::span<const std::uint8_t> stream, DecoderRole role, DecoderLimits limits, std::uint32_t seed) {
    FrameDecoder decoder(role, limits);
    Outcome out;
    std::uint32_t state = seed * 2654435761u + 1;
    std::size_t at = 0;
    while (at < stream.size() && !out.error) {
        state = state * 1664525u + 1013904223u;
        // Mostly tiny chunks (they hit every header/body boundary), sometimes big ones.
        const std::size_t want = (state >> 28) == 0 ? 1 + (state >> 8) % 4096 : 1 + (state >> 16) % 9;
        const std::size_t size = std::min(want, stream.size() - at);
        const std::vector<std::uint8_t> chunk(stream.begin() + static_cast<std::ptrdiff_t>(at),
                                              stream.begin() + static_cast<std::ptrdiff_t>(at + size));
        at += size;
        std::span<const std::uint8_t> input(chunk);
        while (true) {
            auto step = decoder.next(input);
            check_bounds(decoder, limits.max_body_size);
            if (step.error) {
                out.error = step.error->kind;
                check_stays_failed(decoder, *out.error, chunk);
                break;
            }
            if (!step.frame) {
                check(input.empty(), "decoder waits for bytes but left input unconsumed");
                break;
            }
            keep(out, std::move(*step.frame));
        }
    }
    return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size == 0) return 0;
    const std::uint8_t config = data[0];
    static constexpr DecoderRole kRoles[] = {DecoderRole::server, DecoderRole::client, DecoderRole::any,
                                             DecoderRole::any};
    // Small limits make frame_too_large reachable and exercise the boundary
    // between fixed-size bodies (16, up to 265) and the limit.
    static constexpr std::size_t kLimits[] = {lifeline::kDefaultMaxBodySize, 16, 40, 300};
    const DecoderRole role = kRoles[config & 3];
    const DecoderLimits limits{kLimits[(config >> 2) & 3]};
    const std::span<const std::uint8_t> stream(data + 1, size - 1);

    const Outcome whole = decode_whole(stream, role, limits);
    const Outcome split = decode_split(stream, role, limits, config >> 4);

    check(whole.error == split.error, "whole and split decoding end differently");
    check(whole.frames.size() == split.frames.size(), "whole and split decode different counts");
    for (std::size_t i = 0; i < whole.frames.size(); ++i) {
        check(whole.frames[i] == split.frames[i], "whole and split decode different frames");
    }
    return 0;
}

// Internal to src/core: what ClientSession keeps for its WebSocket wire
// (client_session_websocket.cpp), here so that both of its files see it whole.
#pragma once

#include <cstdint>
#include <string>

#include "lifeline/engine/client_session.hpp"
#include "lifeline/engine/websocket.hpp"

namespace lifeline {

struct ClientSession::WebSocketState {
    WebSocketState(std::size_t max_payload, std::uint64_t seed)
        : decoder(max_payload, ws::Role::client), messages(max_payload), random(seed) {}
    ws::WsFrameDecoder decoder;
    ws::WsMessageAssembler messages;
    std::string key;       // Sec-WebSocket-Key we sent, until the 101 is checked.
    std::string response;  // The server's answer, until complete.
    std::uint64_t random;  // The masking keys' generator state.

    ws::Mask mask();
};

}  // namespace lifeline

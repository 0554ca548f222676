#include "cli/flag_names.hpp"

#include <algorithm>
#include <array>
#include <cctype>

namespace lifeline::cli {

namespace {

constexpr std::array kServe = {
    FlagName{"heartbeat", "--heartbeat"},
    FlagName{"timeout", "--timeout"},
    FlagName{"min_interval", "--min-interval"},
    FlagName{"max_timeout", "--max-timeout"},
    FlagName{"handshake_timeout", "--handshake-timeout"},
    FlagName{"idle_timeout", "--idle-timeout"},
    FlagName{"threads", "--threads"},
    FlagName{"output_budget", "--output-budget"},
    FlagName{"slow_consumer_after", "--slow-consumer-after"},
    FlagName{"tick", "--tick"},
    FlagName{"coalesce", "--coalesce"},
    FlagName{"push_rate", "--push"},
    FlagName{"keepalive", "--keepalive"},
    FlagName{"user_timeout", "--user-timeout"},
    FlagName{"listen", "--listen"},
    FlagName{"http", "--http"},
    FlagName{"presence_redis", "--presence"},
    FlagName{"presence_gateway", "--gateway"},
    FlagName{"presence_ttl", "--presence-ttl"},
    FlagName{"presence_retention", "--offline-retention"},
    FlagName{"presence_stream", "--presence-stream"},
};

constexpr std::array kConnect = {
    FlagName{"heartbeat", "--heartbeat"},
    FlagName{"timeout", "--timeout"},
    FlagName{"count", "--count"},
    FlagName{"id", "--id"},
    FlagName{"connect_timeout", "--connect-timeout"},
    FlagName{"backoff_initial", "--backoff-initial"},
    FlagName{"backoff_max", "--backoff-max"},
    FlagName{"keepalive", "--keepalive"},
    FlagName{"user_timeout", "--user-timeout"},
    FlagName{"tls_ca", "--tls-ca"},
    FlagName{"tls_server_name", "--tls-server-name"},
    FlagName{"tls", "--tls"},
};

constexpr std::array kKeepalive = {
    FlagName{"keepalive", "--keepalive"},
    FlagName{"user_timeout", "--user-timeout"},
};

bool word_char(char c) { return std::isalnum(static_cast<unsigned char>(c)) != 0 || c == '_'; }

}  // namespace

const std::span<const FlagName> kServeFlags = kServe;
const std::span<const FlagName> kConnectFlags = kConnect;
const std::span<const FlagName> kKeepaliveFlags = kKeepalive;

std::string with_flag_names(std::string_view message, std::span<const FlagName> names) {
    std::string out;
    out.reserve(message.size() + 16);
    std::size_t i = 0;
    while (i < message.size()) {
        if (message[i] == '"') {  // A quoted value ("http://...") is the user's text: kept as given.
            const std::size_t close = message.find('"', i + 1);
            const std::size_t end = close == std::string_view::npos ? message.size() : close + 1;
            out += message.substr(i, end - i);
            i = end;
            continue;
        }
        if (!word_char(message[i])) {
            out += message[i++];
            continue;
        }
        std::size_t end = i;
        while (end < message.size() && word_char(message[end])) ++end;
        const std::string_view word = message.substr(i, end - i);
        const auto hit = std::find_if(names.begin(), names.end(), [&](const FlagName& n) { return n.field == word; });
        out += hit != names.end() ? hit->flag : word;
        i = end;
    }
    return out;
}

}  // namespace lifeline::cli

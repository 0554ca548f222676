// Test support: a real three-master Redis Cluster (Debian's redis-server and
// redis-cli), started by the test on free loopback ports and stopped with it.
// Ready means `redis-cli --cluster create` reported every slot covered and
// every node's CLUSTER INFO says cluster_state:ok (polled, with a deadline:
// Redis has no event to wait on for it).
#pragma once

#include <chrono>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "support/redis_server.hpp"

namespace lifeline::testing {

class RedisCluster {
public:
    static constexpr int kMasters = 3;

    RedisCluster() {
        std::string create = "redis-cli --cluster create";
        for (int i = 0; i < kMasters; ++i) {
            RedisPlace place;
            // The cluster bus port is another free port (redis-server 7's cluster-port), not port + 10000.
            place.extra = {
                "--cluster-enabled",     "yes",        "--cluster-port",         std::to_string(free_loopback_port()),
                "--cluster-config-file", "nodes.conf", "--cluster-node-timeout", "5000"};
            nodes_.push_back(std::make_unique<RedisServer>(place));
            create += " 127.0.0.1:" + std::to_string(nodes_.back()->port());
        }
        const std::string made = command_output(create + " --cluster-replicas 0 --cluster-yes 2>&1");
        if (made.find("All 16384 slots covered") == std::string::npos)
            throw std::runtime_error("redis-cli --cluster create failed: " + made);
        const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
        for (const auto& node : nodes_) {
            while (node->cli({"CLUSTER", "INFO"}).find("cluster_state:ok") == std::string::npos) {
                if (std::chrono::steady_clock::now() > deadline)
                    throw std::runtime_error("the Redis Cluster did not reach cluster_state:ok in 30 s");
                std::this_thread::sleep_for(std::chrono::milliseconds(50));
            }
        }
    }

    std::string url() const { return nodes_.front()->url(); }
    RedisServer& node(int i) { return *nodes_.at(static_cast<std::size_t>(i)); }

    // redis-cli -c (following redirections) against the first node; its stdout.
    std::string cli(const std::vector<std::string>& args) const {
        std::string cmd = "redis-cli -c -h 127.0.0.1 -p " + std::to_string(nodes_.front()->port());
        for (const std::string& a : args) cmd += " '" + a + "'";
        return command_output(cmd);
    }

    // The node (0..2) serving SLOT, as CLUSTER SLOTS says.
    int node_of_slot(int slot) const {
        const std::string slots = nodes_.front()->cli({"CLUSTER", "SLOTS"});
        // redis-cli prints each range as: first, last, host, port, id (one per line).
        std::vector<std::string> lines;
        std::size_t at = 0;
        while (at < slots.size()) {
            const std::size_t end = slots.find('\n', at);
            lines.push_back(slots.substr(at, end - at));
            at = end == std::string::npos ? slots.size() : end + 1;
        }
        for (std::size_t i = 0; i + 3 < lines.size(); ++i) {
            if (lines[i].empty() || lines[i + 1].empty() || lines[i + 2] != "127.0.0.1") continue;
            if (slot < std::stoi(lines[i]) || slot > std::stoi(lines[i + 1])) continue;
            for (int n = 0; n < kMasters; ++n) {
                if (std::to_string(nodes_[static_cast<std::size_t>(n)]->port()) == lines[i + 3]) return n;
            }
        }
        return -1;
    }

private:
    std::vector<std::unique_ptr<RedisServer>> nodes_;
};

}  // namespace lifeline::testing

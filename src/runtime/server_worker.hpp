// One of the server's event loops and what it owns: its SO_REUSEPORT
// listener, its connections (a slab indexed by slot), the push timer and the
// shutdown deadline. Shared nothing with the other loops but Server::Impl.
// Internal to src/runtime.
#pragma once

#include <sys/socket.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <unordered_set>
#include <vector>

#include "runtime/connection_slab.hpp"
#include "runtime/event_loop.hpp"
#include "runtime/server_connection.hpp"
#include "runtime/server_impl.hpp"

namespace lifeline::runtime {

class Listener final : public LoopObject {
public:
    explicit Listener(Worker& worker, int fd) : worker_(worker), fd_(fd) {}
    ~Listener() override;
    void on_io(std::uint32_t events) override;
    // Accepting was paused after EMFILE; resume.
    void on_timer() override;
    void close_fd();
    int fd() const { return fd_; }

private:
    Worker& worker_;
    int fd_;
};

// A loop-wide timer that calls back into its worker: the push timer
// (ServerOptions::push_rate) and the shutdown flush deadline.
class WorkerTimer final : public LoopObject {
public:
    WorkerTimer(Worker& worker, void (Worker::*fire)()) : worker_(worker), fire_(fire) {}
    ~WorkerTimer() override = default;
    void on_io(std::uint32_t) override {}
    void on_timer() override;

private:
    Worker& worker_;
    void (Worker::*fire_)();
};

class Worker {
public:
    Worker(Server::Impl& server, std::size_t index, std::unique_ptr<EventLoop> loop, int listen_fd);
    ~Worker();

    // The worker whose loop runs on this thread (checked).
    static Worker& current();
    // The same, or nullptr on a thread that runs no loop of any server.
    static Worker* on_this_thread();

    Result<void> start() { return loop_->add(listener_.fd(), EPOLLIN, &listener_); }
    void run();

    EventLoop& loop() { return *loop_; }
    Server::Impl& server() { return server_; }
    const ServerOptions& options() const { return server_.options; }
    std::size_t index() const { return index_; }
    std::vector<std::uint8_t>& scratch() { return scratch_; }

    // A connection accepted on this loop (or handed to it).
    void adopt(int fd, const sockaddr_storage& peer);
    // Moves a finished connection out of its slot; it is freed after this
    // turn, because later events of the same epoll batch may still name it.
    void retire(std::uint32_t slot);
    // A finished connection's last ring operation completed: free it if it waits in limbo.
    void release(Connection* conn);
    Connection* find(std::uint32_t slot, std::uint64_t id);

    void begin_shutdown();
    void finish_shutdown();
    // Starts pushing filler to `conn`, which just became open.
    void start_push(const Connection& conn);
    nlohmann::json describe_connections();
    // The gateway API: every open connection, in slot order.
    void for_each_open(const std::function<void(Connection&)>& fn);
    // Live connections (loop thread; adopt() balances on a relaxed read).
    std::size_t live() const { return live_count_.load(std::memory_order_relaxed); }

private:
    struct PushRef {
        std::uint32_t slot;
        std::uint64_t conn;
    };

    template <class F>
    void for_each_connection(F&& f) {
        for (std::uint32_t slot = 0; slot < slots_.end(); ++slot) {
            if (Connection* conn = slots_.live(slot)) f(*conn);
        }
    }
    // Frees the finished connections, except those the ring still has
    // operations for: they wait in limbo_ until their last completion.
    void bury();
    void prepare_push();
    void push_tick();
    void on_stall(Duration lag);

    Server::Impl& server_;
    std::size_t index_;
    std::unique_ptr<EventLoop> loop_;
    Listener listener_;
    WorkerTimer shutdown_;
    // The connections in place, by slot. Declared after the loop: destroyed before it.
    ConnectionSlab slots_;
    std::size_t live_ = 0;
    std::atomic<std::size_t> live_count_{0};  // live_, for other threads.
    std::vector<Connection*> graveyard_;      // Retired this turn, destroyed after it.
    std::unordered_set<Connection*> limbo_;
    std::vector<std::uint8_t> scratch_;
    // Push (ServerOptions::push_rate); all unused when it is 0.
    WorkerTimer push_timer_;
    std::vector<PushRef> pushing_;          // Open connections being pushed to; closed ones linger until met.
    std::vector<std::uint8_t> push_chunk_;  // What one push sends: an encoded DATA frame, or raw bytes.
    std::size_t push_chunk_payload_ = 1;    // Filler bytes in push_chunk_ (what the rate counts).
    Duration push_interval_;
    Instant push_last_;                        // When credit was last earned.
    std::uint64_t push_credit_bytes_ = 0;      // Earned, not yet sent (less than one chunk between ticks).
    std::uint64_t push_credit_remainder_ = 0;  // Byte-nanoseconds short of the next whole byte.
    bool shutting_down_ = false;
};

}  // namespace lifeline::runtime
